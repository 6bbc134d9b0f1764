"""`silab export RUN --csv`: a run's rounds as one CSV table, for a spreadsheet or pandas.

One row per completed round, one column per record key; nested records are flattened with dots
(`pass_at_k.4`, `seconds.train`, `train.loss`), lists joined with ';'. Written atomically.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from silab.errors import UsageError
from silab.runs.store import RunDir, atomic_write_text, read_records


def flatten(record: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = ";".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)
        else:
            out[name] = value
    return out


def rounds_csv(run_dir: Path) -> str:
    """The CSV text of a run's rounds (columns in the order they first appear)."""
    run_dir = RunDir.check_run(run_dir)
    rows = [flatten(r) for r in read_records(run_dir)]
    if not rows:
        raise UsageError(f"{run_dir}: the run has no completed round to export")
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def export_csv(run_dir: Path, out: Path | None) -> Path | None:
    """Write the CSV to `out` (default RUN/rounds.csv; '-' = stdout). Returns the file written."""
    text = rounds_csv(run_dir)
    if out is not None and str(out) == "-":
        print(text, end="")
        return None
    out = Path(out) if out is not None else Path(run_dir) / "rounds.csv"
    if not out.parent.is_dir():
        raise UsageError(f"{out}: no folder {out.parent} to write into")
    atomic_write_text(out, text)
    return out
