"""Model files: the bundled models reproduce their documented facts; bad files name file + key."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecast import hazards as hz
from forecast.model import ModelError, bundled_models_dir, load_model
from forecast.parameters import default_parameters

BUNDLED = ["b2b", "consumer"]


def documented_facts(model):
    """The facts of a model's [documented] table, computed from its hazards alone."""
    params = default_parameters(model)
    h = params.hazards[0]
    ab = hz.absorption(model, h)
    entry = model.state_index(model.entry)
    q = model.state_index(model.qualified_stage)
    mix = params.arrivals_mean[0] / params.arrivals_mean[0].sum()
    reach_q = hz.reach_probability(model, h, model.qualified_stage)[:, entry, 0] * mix
    wins = mix * ab.win[:, entry, 0]
    return {
        "lead_to_won": float(mix @ ab.win[:, entry, 0]),
        "sql_to_won": float((reach_q / reach_q.sum()) @ ab.win[:, q, 0]),
        "average_deal": float((wins * params.deal_mean[0]).sum() / wins.sum()),
        "sql_shelf_life_days": hz.shelf_life(model, h, model.qualified_stage)[:, 0],
    }


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_matches_documented_facts(name):
    model = load_model(name)
    facts = documented_facts(model)
    doc = model.documented
    for key, value in facts.items():
        assert np.all(np.abs(np.asarray(value) - doc[key]) <= doc[f"{key}_tolerance"]), (
            f"{name}: {key} computed {value}, documented {doc[key]} ± {doc[f'{key}_tolerance']}")


def test_b2b_domain_facts():
    """DESIGN.md: ~25% of SQLs win, ~99% of leads never convert, $100k deals, SQL shelf life
    about a month, and recaptured (recycled) leads convert more slowly than fresh ones."""
    model = load_model("b2b")
    facts = documented_facts(model)
    assert 0.22 <= facts["sql_to_won"] <= 0.28
    assert 0.985 <= 1 - facts["lead_to_won"] <= 0.995
    assert 95_000 <= facts["average_deal"] <= 105_000
    assert np.all((26 <= facts["sql_shelf_life_days"]) & (facts["sql_shelf_life_days"] <= 34))
    ab = hz.absorption(model, default_parameters(model).hazards[0])
    mql = model.state_index("mql")
    nurture = model.state_index("nurture")
    # recycled MQLs win less often and more slowly than fresh MQLs, in every segment
    assert np.all(ab.win[:, mql, 1] < ab.win[:, mql, 0])
    assert np.all(ab.days_to_win[:, mql, 1] > ab.days_to_win[:, mql, 0])
    # a lead in nurture (recycled at least once: entering nurture is an expiry) is worth less
    # than a fresh lead
    assert np.all(ab.win[:, nurture, 1] < ab.win[:, model.state_index("lead"), 0])


def test_consumer_sqls_go_cold_within_a_day():
    model = load_model("consumer")
    h = default_parameters(model).hazards[0]
    assert np.all(hz.shelf_life(model, h, "sql") == 1)
    assert np.all(hz.shelf_life(model, h, "sql") < hz.shelf_life(
        load_model("b2b"), default_parameters(load_model("b2b")).hazards[0], "sql").min())


def test_bundled_names_and_paths_resolve():
    assert load_model().name == "b2b"
    assert load_model(bundled_models_dir() / "consumer.toml").name == "consumer"
    with pytest.raises(ModelError, match="no such model file"):
        load_model("nonexistent")


def test_move_kinds_derived_from_positions():
    m = load_model("b2b")
    assert m.move_kind("lead", "mql") == "advance"
    assert m.move_kind("mql", "opportunity") == "skip"
    assert m.move_kind("opportunity", "won") == "advance"
    assert m.move_kind("sql", "mql") == "expiry"
    assert m.move_kind("sql", "nurture") == "expiry"
    assert m.move_kind("nurture", "mql") == "recapture"
    assert m.move_kind("lead", "lost") == "lost"


def test_crm_stage_mapping_is_case_insensitive():
    m = load_model("b2b")
    assert m.map_stage("Marketing Qualified Lead") == "mql"
    assert m.map_stage("  closed won ") == "won"
    assert m.map_stage("SQL") == "sql"
    assert m.map_stage("Opportunity") == "opportunity"
    assert m.map_stage("nope") is None


# ---- validation: every bad file gets a message naming the file and the key -------------------

B2B_TEXT = (bundled_models_dir() / "b2b.toml").read_text()


def write_variant(tmp_path, old, new, count=1):
    assert old in B2B_TEXT, old
    path = tmp_path / "variant.toml"
    path.write_text(B2B_TEXT.replace(old, new, count))
    return path


BAD = [
    ("unknown destination", "mql =                      [0.0170",
     "mqx =                      [0.0170", "moves.lead.mqx"),
    ("unknown source", "[moves.mql]", "[moves.mqx]", "moves.mqx"),
    ("negative hazard", "[0.0150, 0.0250, 0.0200, 0.0100, 0.0050]",
     "[0.0150, -0.0250, 0.0200, 0.0100, 0.0050]", "moves.lead.nurture"),
    ("bands not increasing", "age_bands = [0, 7, 30, 90, 180]",
     "age_bands = [0, 30, 7, 90, 180]", "funnel.age_bands"),
    ("bands not from 0", "age_bands = [0, 7, 30, 90, 180]",
     "age_bands = [1, 7, 30, 90, 180]", "funnel.age_bands"),
    ("wrong number of hazards",
     "lost =                     [0.0300, 0.0150, 0.0100, 0.0050, 0.0020]",
     "lost =                     [0.0300, 0.0150]", "moves.lead.lost"),
    ("won unreachable", "won =                      [0.0025, 0.0110, 0.0110, 0.0060, 0.0020]",
     "won =                      [0, 0, 0, 0, 0]", "moves"),
    ("entry not a stage", 'entry = "lead"', 'entry = "prospect"', "funnel.entry"),
    ("unknown crm target", '"Customer" = "won"', '"Customer" = "customer"',
     "crm_stages.Customer"),
    ("segment without deal size", "deal_mean = 65000\n", "", "segments.paid_search.deal_mean"),
    ("unknown segment key", "deal_sigma = 0.9\n", "deal_sigma = 0.9\ncolour = 1\n",
     "segments.paid_search.colour"),
    ("bad default segment", 'default_segment = "organic"', 'default_segment = "tv"',
     "funnel.default_segment"),
    ("day of week length", "day_of_week = [1.20, 1.25, 1.20, 1.15, 1.00, 0.35, 0.30]",
     "day_of_week = [1.20, 1.25]", "arrivals.day_of_week"),
    ("hazard not a number", "[0.0200, 0.0300, 0.0250, 0.0120, 0.0060]",
     '[0.0200, "fast", 0.0250, 0.0120, 0.0060]', "moves.mql.nurture"),
    ("unknown table", "[recycle]", "[recycling]", "recycling"),
    # typos in any table are errors, not defaults taken in silence
    ("funnel key typo", 'default_segment = "organic"', 'defualt_segment = "organic"',
     "funnel.defualt_segment"),
    ("arrivals key typo", "day_of_week = [1.20", "day_of_weak = [1.20", "arrivals.day_of_weak"),
    ("unknown recycle key", "advance_multiplier = [1.0, 0.6, 0.4]",
     "advance_multiplier = [1.0, 0.6, 0.4]\nlevels = 3", "recycle.levels"),
    ("documented fact without its tolerance", "sql_to_won_tolerance", "sql_to_won_tolerence",
     "documented.sql_to_won"),
    ("reserved stage name", 'stages = ["lead", "mql", "sql", "opportunity"]',
     'stages = ["lead", "mql", "sql", "won"]', "funnel.stages"),
]


@pytest.mark.parametrize(("case", "old", "new", "key"), BAD, ids=[b[0] for b in BAD])
def test_bad_model_file_names_file_and_key(tmp_path, case, old, new, key):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(ModelError) as exc:
        load_model(path)
    message = str(exc.value)
    assert str(path) in message
    assert f"[{key}]" in message, message


def test_unknown_key_message_lists_the_known_keys(tmp_path):
    path = write_variant(tmp_path, 'default_segment = "organic"', 'defualt_segment = "organic"')
    with pytest.raises(ModelError, match=r"unknown key \(expected .*default_segment\)"):
        load_model(path)


def test_unreachable_stage(tmp_path):
    # MQLs skip straight to opportunity and nothing enters 'sql' any more (won stays reachable).
    text = B2B_TEXT.replace(
        "sql =                      [0.0180, 0.0080, 0.0030, 0.0008, 0.0002]",
        "opportunity =              [0.0180, 0.0080, 0.0030, 0.0008, 0.0002]")
    text = text.replace("sql =                      [0.0000, 0.0020", "lost = [0.0000, 0.0020")
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ModelError, match=r"\[moves.sql\].*unreachable"):
        load_model(path)


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[funnel\nname = 1\n")
    with pytest.raises(ModelError, match=r"broken\.toml: not valid TOML"):
        load_model(path)


def test_default_parameters_apply_multipliers():
    m = load_model("b2b")
    h = default_parameters(m).hazards[0]
    lead, mql, lost = m.state_index("lead"), m.state_index("mql"), m.state_index("lost")
    g_events = m.segment_names.index("events")
    g_org = m.segment_names.index("organic")
    base = m.hazards["lead"]["mql"][0]
    assert h[lead, 0, g_org, 0, mql] == pytest.approx(base)
    assert h[lead, 0, g_events, 0, mql] == pytest.approx(base * 1.25)
    assert h[lead, 0, g_org, 1, mql] == pytest.approx(base * 0.6)
    # lost and expiry hazards carry no multipliers
    assert h[lead, 0, g_events, 2, lost] == pytest.approx(m.hazards["lead"]["lost"][0])


@pytest.mark.parametrize("name", BUNDLED)
def test_describe_all_rows_are_the_documented_facts(name):
    """`describe`'s segment "all" mixes the segments as the leads described mix: the SQLs'
    conversion is that of the leads entering SQL, the mean deal that of won deals; so it
    prints the model file's documented facts (it once mixed by arrivals: $77k for b2b's
    documented $100k mean won deal)."""
    from forecast.describe import describe

    model = load_model(name)
    facts = documented_facts(model)
    table = describe(model, default_parameters(model)).set_index(["quantity", "stage",
                                                                  "segment"])["median"]
    assert table[("conversion_to_won", model.entry, "all")] == pytest.approx(
        facts["lead_to_won"], rel=1e-9)
    assert table[("conversion_to_won", model.qualified_stage, "all")] == pytest.approx(
        facts["sql_to_won"], rel=1e-9)
    assert table[("mean_deal", "won", "all")] == pytest.approx(facts["average_deal"], rel=1e-9)


def test_describe_mixes_every_parameter_set_by_its_own_reach():
    """Several sets at once (a posterior): each set's mix is its own arrivals times its own
    reach probabilities, as `hazards.reach_probability` gives them set by set."""
    from forecast.describe import _mixes

    model = load_model("b2b")
    base = default_parameters(model)
    rng = np.random.default_rng(2)
    sets = base.take(np.zeros(3, dtype=np.int64))
    sets = replace(sets, hazards=sets.hazards * rng.lognormal(0, 0.3, sets.hazards.shape),
                   arrivals_mean=sets.arrivals_mean
                   * rng.lognormal(0, 0.5, sets.arrivals_mean.shape))
    mix = _mixes(model, sets)
    entry = model.state_index(model.entry)
    for k in range(3):
        for stage in ("sql", "opportunity", "nurture"):
            reach = hz.reach_probability(model, sets.hazards[k], stage)[:, entry, 0]
            want = sets.arrivals_mean[k] * reach
            np.testing.assert_allclose(mix[stage][k], want / want.sum(), rtol=1e-10)
        win = hz.absorption(model, sets.hazards[k]).win[:, entry, 0] * sets.arrivals_mean[k]
        np.testing.assert_allclose(mix["won"][k], win / win.sum(), rtol=1e-10)
    assert np.ptp(mix["sql"][:, 0]) > 0.01  # the sets differ
