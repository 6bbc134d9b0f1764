"""Curves in, validated: a run folder's rounds.jsonl, a long-format CSV, or records from the engine.

Everything the fitting code sees is a *panel*: a dict from series name to a `Series` (t, y), with
`solver`, `verifier` and `gap` always present and `accuracy` when a run recorded `test_acc`.
t is on the run's clock (`Series.unit`): rounds of self-improvement, or epochs of one fine-tune on
fixed picks (a run with train.picks = "fixed" records `t` = round x epochs per round). A CSV's t
reads as epochs, the clock of the paper's figures.
Bad input is refused here, once, with one line naming the file and the problem (`UsageError`), so
the models never meet NaNs, duplicate times or one-point curves.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from silab.errors import UsageError

REQUIRED = ("solver", "verifier", "gap")
KNOWN = REQUIRED + ("accuracy",)
RUN_PANEL = "run"
RUN_KEYS = {"solver": "U_s", "verifier": "U_v", "gap": "G"}


@dataclass(frozen=True)
class Series:
    """One curve: strictly increasing times t and finite values y; t counts `unit`s (round, epoch),
    so a fitted rate is per that unit."""
    t: np.ndarray
    y: np.ndarray
    unit: str = "round"

    def __len__(self) -> int:
        return len(self.t)

    def head(self, n: int) -> "Series":
        return Series(self.t[:n], self.y[:n], self.unit)

    def before(self, t_cut: float) -> "Series":
        keep = self.t <= t_cut
        return Series(self.t[keep], self.y[keep], self.unit)


Panel = dict[str, Series]


def load(path: str | Path) -> dict[str, Panel]:
    """Read a run folder (or its rounds.jsonl) or a long CSV into {panel name: panel}."""
    try:
        return _load(Path(path), path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not a readable CSV ({exc})") from None


def _load(p: Path, path) -> dict[str, Panel]:
    if not p.exists():
        raise UsageError(f"{path}: no such file or directory")
    if p.is_dir():
        rounds = p / "rounds.jsonl"
        if not rounds.is_file():
            raise UsageError(f"{path}: no rounds.jsonl here (is it a run folder?)")
        return {RUN_PANEL: _panel_from_jsonl(rounds)}
    if p.suffix == ".jsonl":
        return {RUN_PANEL: _panel_from_jsonl(p)}
    if p.suffix.lower() == ".csv":
        return _panels_from_csv(p)
    raise UsageError(f"{path}: expected a run folder, a rounds.jsonl or a .csv file")


def _number(raw, where: str, what: str, file: Path) -> float:
    """A finite float, or one clear line saying why not."""
    if isinstance(raw, bool) or raw is None:
        raise UsageError(f"{file}: {where}: {what} is {json.dumps(raw)}, not a number")
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{file}: {where}: {what} {raw!r} is not a number") from None
    if not math.isfinite(x):
        raise UsageError(f"{file}: {where}: {what} is {raw!r}, not a finite number")
    return x


def _check_series(ts: list[float], lines: list[str], name: str, file: Path) -> None:
    if len(ts) == 0:
        raise UsageError(f"{file}: {name} is empty")
    if len(ts) == 1:
        raise UsageError(f"{file}: {name} has only one point (need at least 2)")
    for i in range(1, len(ts)):
        if ts[i] <= ts[i - 1]:
            kind = "duplicate" if ts[i] == ts[i - 1] else "decreasing"
            raise UsageError(f"{file}: {name}: {kind} t at {lines[i]} "
                             f"(t={ts[i]:g} after t={ts[i - 1]:g}); t must increase")


def _panel_from_jsonl(file: Path) -> Panel:
    text = file.read_text(encoding="utf-8", errors="replace")
    cols: dict[str, list[float]] = {k: [] for k in ("round", *RUN_KEYS.values())}
    acc: list[tuple[float, float]] = []
    lines: list[str] = []
    units: set[str] = set()
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{file}: {where}: not valid JSON") from None
        if not isinstance(rec, dict):
            raise UsageError(f"{file}: {where}: expected a JSON object")
        for key in cols:
            if key not in rec:
                raise UsageError(f"{file}: {where}: missing key {key!r}")
            cols[key].append(_number(rec[key], where, key, file))
        if "t" in rec:  # the run's clock (epochs on fixed picks); older runs: the round
            cols["round"][-1] = _number(rec["t"], where, "t", file)
        units.add(rec.get("clock", "round"))
        lines.append(where)
        a = rec.get("test_acc")
        if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a):
            acc.append((cols["round"][-1], float(a)))
    if not lines:
        raise UsageError(f"{file}: no rounds recorded")
    if len(units) > 1:
        raise UsageError(f"{file}: rounds on different clocks ({', '.join(sorted(units))})")
    unit = units.pop()
    _check_series(cols["round"], lines, "t" if unit != "round" else "round", file)
    t = np.asarray(cols["round"], dtype=float)
    panel = {s: Series(t, np.asarray(cols[k], dtype=float), unit) for s, k in RUN_KEYS.items()}
    if len(acc) >= 2:
        panel["accuracy"] = Series(*(np.asarray(c, dtype=float) for c in zip(*acc)), unit)
    return panel


def _panels_from_csv(file: Path) -> dict[str, Panel]:
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("series", "t", "value") if c not in header]
        if missing:
            raise UsageError(f"{file}: missing column {missing[0]!r} "
                             "(need series, t, value; panel is optional)")
        reader.fieldnames = header
        raw: dict[str, dict[str, tuple[list[float], list[float], list[str]]]] = {}
        for row in reader:
            where = f"line {reader.line_num}"
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            panel = (row.get("panel") or "").strip() or RUN_PANEL
            series = (row.get("series") or "").strip()
            if series not in KNOWN:
                raise UsageError(f"{file}: {where}: unknown series {series!r} "
                                 f"(expected {', '.join(KNOWN)})")
            t = _number((row.get("t") or "").strip(), where, "t", file)
            y = _number((row.get("value") or "").strip(), where, "value", file)
            ts, ys, ls = raw.setdefault(panel, {}).setdefault(series, ([], [], []))
            ts.append(t)
            ys.append(y)
            ls.append(where)
    if not raw:
        raise UsageError(f"{file}: no data rows")
    panels: dict[str, Panel] = {}
    for name, by_series in raw.items():
        where = f"panel {name!r} " if "panel" in header else ""
        for s, (ts, _, ls) in by_series.items():
            _check_series(ts, ls, f"{where}series {s!r}", file)
        for s in REQUIRED:
            if s not in by_series:
                raise UsageError(f"{file}: {where}missing series {s!r} "
                                 f"(need {', '.join(REQUIRED)})")
        panels[name] = {s: Series(np.asarray(ts, float), np.asarray(ys, float), "epoch")
                        for s, (ts, ys, _) in by_series.items()}
    return panels


def panel_from_records(records: list[dict]) -> Panel:
    """Lenient reading for the live UI: keep the rounds whose U_s and U_v are finite, in order.

    Never raises; G falls back to U_s - U_v when absent. Rounds out of order are dropped.
    """
    t, us, uv, g, acc = [], [], [], [], []
    for i, rec in enumerate(records or []):
        if not isinstance(rec, dict):
            continue
        r = _finite(rec.get("round", i))
        s, v = _finite(rec.get("U_s")), _finite(rec.get("U_v"))
        if r is None or s is None or v is None or (t and r <= t[-1]):
            continue
        gap = _finite(rec.get("G"))
        t.append(r)
        us.append(s)
        uv.append(v)
        g.append(s - v if gap is None else gap)
        a = _finite(rec.get("test_acc"))
        if a is not None:
            acc.append((r, a))
    ta = np.asarray(t, dtype=float)
    panel = {"solver": Series(ta, np.asarray(us, float)),
             "verifier": Series(ta, np.asarray(uv, float)),
             "gap": Series(ta, np.asarray(g, float))}
    if acc:
        panel["accuracy"] = Series(*(np.asarray(c, dtype=float) for c in zip(*acc)))
    return panel


def _finite(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def jsonable(x):
    """Plain JSON: numpy scalars to floats, NaN and infinities to null, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
