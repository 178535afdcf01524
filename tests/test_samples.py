"""The bundled sample histories are exactly what their documented command produces."""

from __future__ import annotations

import gzip

import pytest
from click.testing import CliRunner

from forecast.cli import main
from forecast.model import load_model
from forecast.samples import SAMPLE_COMMANDS, sample_history_path


@pytest.mark.parametrize("name", sorted(SAMPLE_COMMANDS))
def test_sample_regenerates_bit_for_bit(tmp_path, name):
    model, start, days, seed = SAMPLE_COMMANDS[name]
    out = tmp_path / f"{name}.csv.gz"
    res = CliRunner().invoke(main, ["simulate-history", "--model", model, "--start", start,
                                    "--days", str(days), "--seed", str(seed), "--out", str(out)])
    assert res.exit_code == 0, res.output
    bundled = sample_history_path(load_model(name))
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(bundled.read_bytes())


def test_simulate_history_into_a_missing_directory_is_a_one_line_error(tmp_path):
    out = tmp_path / "nodir" / "x.csv"
    res = CliRunner().invoke(main, ["simulate-history", "--start", "2026-01-01", "--days", "10",
                                    "--out", str(out)])
    assert res.exit_code == 1
    assert res.output == f"forecast: error: {out}: directory {out.parent} does not exist\n"
    assert not out.parent.exists()


def test_simulate_history_writes_the_same_bytes_every_time(tmp_path):
    """Same seed, same file, byte for byte, .csv.gz included (the gzip header used to hold the
    temporary file's name, with the process id in it); suffixes in any case."""
    outs = []
    for i, name in enumerate(("a.csv.gz", "b.CSV.GZ", "run.v2.csv", "c.CSV", "d.Parquet")):
        out = tmp_path / str(i) / name
        out.parent.mkdir()
        res = CliRunner().invoke(main, ["simulate-history", "--start", "2026-01-01", "--days",
                                        "30", "--seed", "4", "--out", str(out)])
        assert res.exit_code == 0, res.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[2] == outs[3] == gzip.decompress(outs[0])
    assert outs[4][:4] == b"PAR1"
