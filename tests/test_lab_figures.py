"""`silab plot` and `silab export`: a figure file of some size, a CSV that reads back, and bad
input as one line with exit 2 and nothing written."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from silab.cli import main

TINY = Path(__file__).parent / "data" / "recorded_tiny"


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code


def test_plot_writes_the_papers_panels(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert run_cli(["plot", str(TINY), str(TINY), "-o", str(out)]) == 0
    assert out.stat().st_size > 50_000                      # four panels at 150 dpi
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]    # no temporary file left
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["plot", str(TINY), "-o", "fig.jpg"], "must end in .png, .pdf or .svg"),
    (["plot", "nope", "-o", "fig.png"], "nope: no such run folder"),
    (["plot", str(TINY), "-o", "no/such/dir/fig.svg"], "no folder"),
    (["export", "nope", "--csv"], "nope: no such run folder"),
    (["export", str(TINY), "--csv", "-o", "no/such/dir/x.csv"], "no folder"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_csv_reads_back(tmp_path):
    out = tmp_path / "rounds.csv"
    assert run_cli(["export", str(TINY), "--csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    records = [json.loads(line) for line in (TINY / "rounds.jsonl").read_text().splitlines()]
    assert [int(r["round"]) for r in rows] == [r["round"] for r in records]
    assert float(rows[-1]["U_s"]) == records[-1]["U_s"]
    assert float(rows[-1]["pass_at_k.16"]) == records[-1]["pass_at_k"]["16"]
    assert float(rows[3]["seconds.total"]) == records[3]["seconds"]["total"]
    assert rows[0]["train"] == "" and rows[1]["train.steps"] != ""   # null at round 0
