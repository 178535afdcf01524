"""A planner's walk through ``forecast scenario | sweep | sensitivity | plan`` with the
mistakes planners make: each is refused with one line naming what was wrong, or said plainly
in the output, instead of a silent wrong answer."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from forecast.cli import main
from forecast.model import load_model
from forecast.parameters import default_parameters
from forecast.scenario import ScenarioError, apply_changes, load_scenario, parse_change

FAST = ("--paths", "20", "--horizon", "20", "--quiet")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _scenario(path, name, add=0.05):
    path.write_text(f'name = "{name}"\n[[change]]\nlever = "win_rate"\nadd = {add}\n',
                    encoding="utf-8")
    return path


def test_two_scenarios_of_one_name_are_refused(tmp_path):
    """The CSV, JSON and ledger tell a scenario's rows apart by its name only: two files of
    one name gave rows nobody could tell apart."""
    one = _scenario(tmp_path / "one.toml", "Better close")
    two = _scenario(tmp_path / "two.toml", "Better close", add=0.1)
    res = invoke("scenario", one, two, *FAST, "--format", "csv")
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1
    assert str(two) in res.stderr and "'Better close'" in res.stderr and str(one) in res.stderr
    res = invoke("scenario", one, one, *FAST)
    assert res.exit_code == 1 and "given twice" in res.stderr


def test_a_scenario_named_baseline_is_refused_with_a_ledger(tmp_path):
    """The ledger records the family's baseline as scenario 'baseline': a scenario of that
    name would be recorded as a second baseline; nothing is recorded."""
    sc = _scenario(tmp_path / "b.toml", "baseline")
    ledger = tmp_path / "runs.duckdb"
    res = invoke("scenario", sc, *FAST, "--ledger", ledger)
    assert res.exit_code == 1 and "'baseline'" in res.stderr and str(sc) in res.stderr
    assert not ledger.exists()
    assert invoke("scenario", sc, *FAST).exit_code == 0  # no ledger: a name like another


def test_unicode_names_are_kept(tmp_path):
    sc = _scenario(tmp_path / "u.toml", "Ünïcødé 勝率 +5")
    res = invoke("scenario", sc, *FAST, "--format", "csv")
    assert res.exit_code == 0, res.output
    assert "Ünïcødé 勝率 +5,total," in res.stdout


@pytest.mark.parametrize("args", [
    ("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.1, "--steps", 2, "--target", "nan"),
    ("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.1, "--steps", 2, "--target", -5),
    ("sensitivity", "--target", "nan"),
    ("sensitivity", "--target", "inf"),
    ("sensitivity", "--change", "nan"),
    ("sensitivity", "--ltv-multiple", "nan"),
    ("plan", "--period", "2026Q4", "--target", "nan"),
    ("plan", "--period", "2026Q4", "--target", "inf"),
    ("plan", "--period", "2026Q4", "--target", 4e6, "--confidence", "nan"),
])
def test_numbers_that_are_not_finite_or_negative_are_refused(args):
    """nan passes click's ranges (it compares false): ``plan --confidence nan`` printed a plan
    'with probability nan%', ``sweep --target nan`` a column 'P(>= $nan)' of 0%, and
    ``plan --target nan`` searched up to 1024 times today's arrivals before blaming the
    period. A negative target counted every path as reaching it."""
    res = invoke(*args, "--paths", 5, "--horizon", 10, "--quiet")
    assert res.exit_code == 2, res.output
    option = next(a for a in args if str(a).startswith("--") and str(a) in (
        "--target", "--change", "--ltv-multiple", "--confidence")
        and args[args.index(a) + 1] in ("nan", "inf", -5))
    assert f"Invalid value for '{option}'" in res.output


@pytest.mark.parametrize(("ends", "message"), [
    (("inf", 0.1), "Invalid value for '--from': inf is not a finite number."),
    ((0, "nan"), "Invalid value for '--to': nan is not a finite number."),
    (("-inf", "inf"), "Invalid value for '--from'"),
    ((-1e308, 1e308), "--from -1e+308 --to 1e+308: the values between them are not finite"),
])
def test_sweep_ends_that_are_not_finite_are_refused_up_front(ends, message):
    """``sweep --from inf`` printed numpy's RuntimeWarnings (invalid value in multiply, in add)
    and then "add must be a number, got nan", exit 1: now a usage error before any input is
    read, exit 2 as for ``--target nan``, and no warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = invoke("sweep", "--lever", "win_rate", "--from", ends[0], "--to", ends[1],
                     "--steps", 3, *FAST)
    assert res.exit_code == 2, res.output
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0] and "got nan" not in res.stderr


def test_sweep_target_zero_is_still_a_target():
    res = invoke("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2,
                 "--target", 0, *FAST)
    assert res.exit_code == 0 and "P(>= $0)" in res.stdout


@pytest.mark.parametrize(("raw", "message"), [
    ({"lever": "deal_size", "multiply": 1e308}, "mean deal too large"),
    ({"lever": "arrivals", "multiply": 1e308}, "more than 1,000,000 new leads a day"),
    ({"lever": "arrivals", "segment": "organic", "multiply": 1e308},
     "more than 1,000,000 new leads a day"),
    # finite, but past what the simulator counts: 1e18 gave negative arrivals, 1e19 none
    ({"lever": "arrivals", "multiply": 1e18}, "more than 1,000,000 new leads a day"),
    ({"lever": "arrivals", "add": 1e7}, "more than 1,000,000 new leads a day"),
])
def test_a_change_overflowing_to_infinity_is_an_error(raw, message):
    """``deal_size multiply = 1e308`` made every mean deal infinite: the scenario printed
    bookings of $nan and a mean difference of $infB, exit code 0."""
    model = load_model("b2b")
    change = parse_change(raw, model, "x.toml: change 1")
    with pytest.raises(ScenarioError, match=message) as err:
        apply_changes(model, default_parameters(model), [change])
    assert "x.toml: change 1" in str(err.value)


def test_a_huge_deal_size_in_a_file_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\n[[change]]\nlever = "deal_size"\nmultiply = 1e308\n')
    res = invoke("scenario", path, *FAST)
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and str(path) in res.stderr


def test_description_must_be_a_string(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('name = "d"\ndescription = 5\n[[change]]\nlever = "win_rate"\nadd = 0.05\n')
    with pytest.raises(ScenarioError, match="'description' must be a string") as err:
        load_scenario(path, load_model("b2b"))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("command", [
    ("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2, "--target", 1e6),
    ("sensitivity", "--change", 0.5),
    ("plan", "--target", 1e5),
])
def test_a_period_under_way_says_only_its_rest_is_counted(command):
    """As of 2026-09-30 (the bundled sample), 2026 is under way: its bookings before the
    as-of date are not in the forecast, so a yearly target is compared with the last quarter
    alone; the table says so. A period that starts after the as-of date says nothing."""
    res = invoke(*command, "--period", 2026, "--paths", 5, "--quiet")
    assert res.exit_code == 0, res.output
    assert ("2026 began on 2026-01-01, before the as-of date 2026-09-30: only its bookings "
            "from 2026-10-01 to 2026-12-31 (92 days) are counted") in res.stdout
    if command[0] != "sensitivity":  # the costly one: once is enough
        res = invoke(*command, "--period", "2026-10", "--paths", 5, "--quiet")
        assert res.exit_code == 0, res.output
        assert "began on" not in res.stdout


def test_a_horizon_that_period_overrides_is_warned_about():
    """With --period the horizon runs to the period's end: a --horizon given as well was
    dropped in silence (the header said 182 days where 30 were asked for)."""
    args = ("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2,
            "--period", "2026-10", "--paths", 5, "--quiet")
    res = invoke(*args, "--horizon", 60)
    assert res.exit_code == 0, res.output
    assert ("forecast: warning: --horizon 60 is not used: with --period 2026-10 the horizon "
            "runs to the period's end (31 days)") in res.stderr
    assert "31 days" in res.stdout
    for quiet in (invoke(*args), invoke(*args, "--horizon", 31)):  # nothing to warn about
        assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_arrivals_past_what_the_simulator_counts_are_refused(tmp_path):
    """A model file's ``arrivals_per_day`` above 1,000,000 is an error naming the key, and
    ``simulate`` refuses such parameters however they were made (1e18 leads a day overflowed
    into negative arrivals, with exit code 0)."""
    import dataclasses
    import datetime as dt

    import numpy as np

    from forecast.model import ModelError
    from forecast.simulate import Pipeline, simulate
    from tests.conftest import TWO_STAGE_TOML

    model = load_model("b2b")
    params = default_parameters(model)
    huge = dataclasses.replace(params, arrivals_mean=params.arrivals_mean * 1e18)
    empty = Pipeline(state=np.zeros(0, np.int64), age=np.zeros(0, np.int64),
                     segment=np.zeros(0, np.int64), recycle=np.zeros(0, np.int64),
                     amount=np.zeros(0))
    with pytest.raises(ValueError, match="more than 1,000,000 leads a day"):
        simulate(model, huge, empty, dt.date(2026, 1, 1), 5, 2, seed=0)
    text = TWO_STAGE_TOML
    path = tmp_path / "m.toml"
    import re
    path.write_text(re.sub(r"arrivals_per_day = [0-9.]+", "arrivals_per_day = 2e6", text,
                           count=1))
    with pytest.raises(ModelError, match=r"arrivals_per_day.*at most 1,000,000"):
        load_model(path)


def test_a_period_past_the_longest_horizon_is_refused():
    """``--period 2040Q1`` ran a forecast of 5,000 days, past the 3,660 ``--horizon`` takes."""
    res = invoke("sweep", "--lever", "win_rate", "--from", 0, "--to", 0.05, "--steps", 2,
                 "--period", "2040Q1", "--paths", 20, "--quiet")
    assert res.exit_code == 1 and res.stdout == ""
    assert "--period 2040Q1 ends" in res.stderr and "3,660 days" in res.stderr
    assert res.stderr.count("\n") == 1
