"""`silab fit`: outputs for good input, one line and exit 2 for bad input."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from silab.theory.cli import main

LAM, T = 0.3, np.arange(16.0)
US = 0.2 + 0.8 * np.exp(-LAM * T)
UV = 0.1 + 0.3 * np.exp(-LAM * T)


def write_csv(path, rows, header="series,t,value"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def long_rows(panel=None, noise=0.0):
    rng = np.random.default_rng(1)
    rows = []
    for name, y in (("solver", US), ("verifier", UV), ("gap", US - UV)):
        for t, v in zip(T, y + noise * rng.standard_normal(T.size)):
            rows.append(([panel] if panel else []) + [name, t, v])
    return rows


def run_dir(tmp_path, n=16, acc=True):
    d = tmp_path / "run"
    d.mkdir()
    lines = []
    for i in range(n):
        rec = {"round": i, "U_s": US[i], "U_v": UV[i], "G": US[i] - UV[i], "n_prompts": 8}
        if acc:
            rec["test_acc"] = 0.9 - 0.6 * math.exp(-0.5 * i)
        lines.append(json.dumps(rec))
    (d / "rounds.jsonl").write_text("\n".join(lines) + "\n")
    return d


def run_json(capsys, argv):
    rc = main(argv + ["--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_csv_without_panel_gives_one_panel_named_run(tmp_path, capsys):
    path = write_csv(tmp_path / "c.csv", long_rows(noise=0.002))
    out = run_json(capsys, [str(path), "--holdout", "3"])
    assert list(out) == ["run"]
    models = out["run"]["models"]
    assert set(models) == {"coupled", "exp", "power", "exp2"}
    for m in models.values():
        assert {"params", "stderr", "r2", "heldout_mse", "converged"} <= set(m)
        assert isinstance(m["converged"], bool)
        assert set(m["r2"]) == {"solver", "verifier", "gap"}
    coupled = models["coupled"]
    assert coupled["converged"]
    assert coupled["params"]["lambda"] == pytest.approx(LAM, rel=0.05)
    assert coupled["params"]["U_s_inf"] == pytest.approx(0.2, abs=0.01)
    assert coupled["heldout_mse"] < 1e-4
    assert set(models["exp"]["params"]) >= {"solver.lambda", "verifier.lambda", "gap.lambda"}
    lin = out["run"]["linearity"]
    assert set(lin) >= {"slope", "intercept", "r2"} and lin["slope"] < 0


def test_csv_panels_and_single_model(tmp_path, capsys):
    rows = long_rows("a") + long_rows("b")
    path = write_csv(tmp_path / "p.csv", rows, header="panel,series,t,value")
    out = run_json(capsys, [str(path), "--model", "coupled"])
    assert set(out) == {"a", "b"}
    assert list(out["a"]["models"]) == ["coupled"]
    assert out["a"]["models"]["coupled"]["heldout_mse"] is None     # no --holdout asked


def test_run_folder_reads_rounds_jsonl_and_the_accuracy_limit(tmp_path, capsys):
    out = run_json(capsys, [str(run_dir(tmp_path)), "--model", "exp"])
    assert list(out) == ["run"]
    assert out["run"]["limit"]["accuracy_inf"]["value"] == pytest.approx(0.9, abs=1e-6)
    assert out["run"]["limit"]["U_s_inf"]["value"] == pytest.approx(0.2, abs=1e-6)


def test_json_has_no_nan(tmp_path, capsys):
    """Unidentified numbers come out as null, so strict JSON parsers accept the output."""
    rows = [[s, t, 1.0] for s in ("solver", "verifier", "gap") for t in range(8)]
    path = write_csv(tmp_path / "flat.csv", rows)
    rc = main([str(path), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_table_output(tmp_path, capsys):
    rc = main([str(run_dir(tmp_path)), "--holdout", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    for word in ("coupled", "exp2", "power", "held-out", "U_s_inf", "linearity", "rolling"):
        assert word in out


BAD = {                                  # content, and what the one line must say
    "missing_file": (None, "no such file"),
    "empty": ("series,t,value\n", "no data"),
    "one_point": ("series,t,value\nsolver,0,1\nsolver,1,0.9\nverifier,0,1\nverifier,1,.9\n"
                  "gap,0,1\n", "only one point"),
    "non_numeric": ("series,t,value\nsolver,0,abc\n", "not a number"),
    "nan": ("series,t,value\nsolver,0,nan\n", "not a finite number"),
    "inf": ("series,t,value\nsolver,0,-inf\n", "not a finite number"),
    "missing_series": ("series,t,value\nsolver,0,1\nsolver,1,0.9\nverifier,0,1\nverifier,1,.9\n",
                       "missing series 'gap'"),
    "duplicate_t": ("series,t,value\nsolver,0,1\nsolver,0,0.9\n", "duplicate t"),
    "decreasing_t": ("series,t,value\nsolver,1,1\nsolver,0,0.9\n", "decreasing t"),
    "no_value_column": ("series,t\nsolver,0\n", "missing column 'value'"),
    "unknown_series": ("series,t,value\nteacher,0,1\n", "unknown series"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_csv_is_one_line_and_exit_2(tmp_path, capsys, case):
    content, says = BAD[case]
    path = tmp_path / f"{case}.csv"
    if content is not None:
        path.write_text(content)
    rc = main([str(path)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"silab fit: error: {path}: ")
    assert says in lines[0]


@pytest.mark.parametrize("content", [
    None,                                                     # folder without rounds.jsonl
    "",                                                       # no rounds
    '{"round": 0, "U_s": 1, "U_v": 0.5, "G": 0.5}\n',         # one round
    '{"round": 0, "U_s": 1, "U_v": 0.5, "G": 0.5}\n{not json\n',
    '{"round": 0, "U_s": 1, "U_v": 0.5}\n{"round": 1, "U_s": 1, "U_v": 0.5}\n',   # no G
    '{"round": 0, "U_s": null, "U_v": 0.5, "G": 0}\n{"round": 1, "U_s": 1, "U_v": 0.5, "G": 0}\n',
    '{"round": 1, "U_s": 1, "U_v": 0.5, "G": 0}\n{"round": 0, "U_s": 1, "U_v": 0.5, "G": 0}\n',
])
def test_bad_run_folder_is_one_line_and_exit_2(tmp_path, capsys, content):
    d = tmp_path / "run"
    d.mkdir()
    if content is not None:
        (d / "rounds.jsonl").write_text(content)
    assert main([str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("silab fit: error: ")


@pytest.mark.parametrize("argv", [["--model", "cubic"], ["--holdout", "15"], ["--holdout", "-1"],
                                  ["--holdout", "x"]])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, argv):
    assert main([str(run_dir(tmp_path))] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("silab fit: error: ")


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text(BAD["nan"][0])
    proc = subprocess.run([sys.executable, "-m", "silab.theory.cli", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"silab fit: error: {path}")
