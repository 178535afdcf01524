"""The notebooks in ``notebooks/``: committed with the outputs of a full run, and re-executed
here at a small size (``FORECAST_NOTEBOOK_SMALL=1``: fewer paths, draws and cutoffs) so they
never rot.

Notebooks 2 and 4 read the CRM sample in ``../shared/data/crm_opportunities`` when it is there
and the bundled b2b sample history otherwise; both ways must run.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
NAMES = ["01-quickstart", "02-fit-your-crm", "03-stress-test", "04-can-we-trust-it"]
MAX_BYTES = 500_000  # images embedded, but a notebook should stay light on a code host


def test_the_four_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_the_outputs_of_a_full_run(path):
    """Every code cell ran, in order, without an error; a reasonable file size."""
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "FORECAST_NOTEBOOK_SMALL" in code[0].source
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", cell.source
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert "Traceback" not in text, cell.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_end_to_end_at_a_small_size(path, monkeypatch, tmp_path):
    # The kernel inherits the environment: the small size, and a temporary directory of the
    # test's own for the charts and posteriors the notebook writes.
    monkeypatch.setenv("FORECAST_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
