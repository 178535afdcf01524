"""Which hierarchical effects the fit centres: where the data pin them (a non-centred form is a
banana there, and NUTS takes hundreds of steps a draw), and not where the prior dominates (a
centred form is a funnel). The choice changes the sampler's coordinates, never the posterior."""

from __future__ import annotations

import numpy as np

from forecast.fit import CENTRED_MIN_EVENTS, pinned_deal_means, pinned_segment_effects


def lognormal_deals(counts, means, sigma, seed=0):
    rng = np.random.default_rng(seed)
    segment = np.repeat(np.arange(len(counts)), counts)
    logs = np.asarray(means, dtype=float)[segment] + sigma * rng.standard_normal(segment.size)
    return segment, np.exp(logs)


def test_deal_means_at_list_price_are_pinned_even_for_a_rare_product():
    # The CRM sample's shape: products priced orders of magnitude apart, sold near list price;
    # one product sold 15 times. A segment with no deal, or one, is never pinned.
    segment, amounts = lognormal_deals([900, 700, 15, 1], [5.5, 8.5, 10.0, 7.0], 0.1)
    assert pinned_deal_means(segment, amounts, 5).tolist() == [True, True, True, False, False]


def test_deal_means_alike_and_noisy_are_not_pinned():
    # The bundled b2b sample's shape: 6 to 25 deals a segment, wide spread, the same mean. The
    # sample means still differ (by their noise, ~0.25), which alone must not count as spread.
    segment, amounts = lognormal_deals([14, 6, 15, 18, 25], [11.0] * 5, 1.0, seed=3)
    means = [np.log(amounts[segment == g]).mean() for g in range(5)]
    assert np.std(means) > 0.1
    assert not pinned_deal_means(segment, amounts, 5).any()
    # ... and with the means truly apart (by 3 on the log scale), the larger segments are
    segment, amounts = lognormal_deals([14, 6, 15, 18, 25], [8, 11, 14, 9, 12], 1.0, seed=3)
    assert pinned_deal_means(segment, amounts, 5).all()


def test_too_few_segments_with_deals_pin_nothing():
    segment, amounts = lognormal_deals([500, 1], [5.0, 9.0], 0.1)
    assert not pinned_deal_means(segment, amounts, 3).any()


def test_segment_effects_pinned_by_counts_or_by_spread():
    exposure = np.full((4, 5), 10_000.0)
    events = np.array([
        [150, 120, 300, 101, 200],  # every segment saw it 100 times: pinned
        [900, 700, 800, 600, 15],   # rates 60x apart (15 vs 900 a segment), one rare: pinned
        [60, 61, 59, 60, 62],       # the same rate everywhere, few events: not pinned
        [4, 7, 5, 3, 6],            # few events, the spread is the noise's: not pinned
    ], dtype=float)
    assert events[0].min() >= CENTRED_MIN_EVENTS
    assert pinned_segment_effects(events, exposure).tolist() == [True, True, False, False]
    # A single segment that saw the move tells nothing on the spread.
    assert not pinned_segment_effects(np.array([[0.0, 40.0]]), np.ones((1, 2))).any()
