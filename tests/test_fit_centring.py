"""Which segment effects the fit centres: where the data pin them (a non-centred form is a
banana there, and NUTS takes hundreds of steps a draw), and not where the prior dominates (a
centred form is a funnel). The choice changes the sampler's coordinates, never the posterior.
(The segments' deal means have neither form: they are integrated out; ``tests/test_fit.py``.)"""

from __future__ import annotations

import numpy as np

from forecast.fit import CENTRED_MIN_EVENTS, pinned_segment_effects


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
