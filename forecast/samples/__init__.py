"""Sample histories shipped with the package, so `forecast run` works with no files of one's own.

``b2b_history.csv.gz`` is one year of synthetic CRM history simulated from the defaults of
``models/b2b.toml``, made with (and reproducible by)::

    forecast simulate-history --model b2b --start 2025-10-01 --days 365 --seed 2026 \
        --out forecast/samples/b2b_history.csv.gz

``tests/test_samples.py`` regenerates it and checks it is identical.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLES = {"b2b": "b2b_history.csv.gz", "consumer": "consumer_history.csv.gz"}
SAMPLE_COMMANDS = {
    "b2b": ("b2b", "2025-10-01", 365, 2026),
    "consumer": ("consumer", "2026-07-03", 90, 2026),
}


def sample_history_path(model) -> Path | None:
    """The bundled sample history for a bundled model (by name), or None."""
    name = SAMPLES.get(model.name)
    if name is None:
        return None
    path = Path(str(resources.files("forecast.samples") / name))
    return path if path.exists() else None
