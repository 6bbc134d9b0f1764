"""`silab sweep` on the micro organism: arms with their own run folders, shared rounds, the
external pool spent once and never on prompts or test items, pass@k in rounds.jsonl, the table
and JSON, and one line with exit 2 for bad input."""
import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from silab.cli import main as cli_main
from silab.config import load_profile
from silab.sweep import main as sweep_main, render
from silab.runs.store import read_jsonl, read_records
from silab.tasks import split_items

MICRO_PROFILE = Path(__file__).resolve().parent / "micro.toml"
PASS_K = 4   # micro: N = 4 samples per train prompt; pass@k from 4 samples per test item


def strict_json(text):
    def no_nan(name):
        raise ValueError(f"{name} in JSON output")
    return json.loads(text, parse_constant=no_nan)


@pytest.fixture(scope="module")
def sweep(organism_cache, tmp_path_factory):
    """One 3-arm sweep (none, early, late), rounds 0..2, one seed, --json."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    argv = ["--profile", str(MICRO_PROFILE), "--set", f"model.cache_dir={organism_cache}",
            "--set", f"sampling.pass_k={PASS_K}", "--schedules", "early,late", "--rounds", "2",
            "--seeds", "1", "--out", str(out), "--json"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = sweep_main(argv)
    assert code == 0, stderr.getvalue()[-2000:]
    profile = load_profile(str(MICRO_PROFILE), [f"model.cache_dir={organism_cache}"])
    return {"out": out, "result": strict_json(stdout.getvalue()), "stderr": stderr.getvalue(),
            "splits": split_items("arith", profile.task, profile.seed), "n_external": profile.task.n_external}


def test_json_has_one_entry_per_arm_and_the_theory_view(sweep):
    r = sweep["result"]
    assert r["schedules"] == ["none", "early", "late"]         # the control arm is always run
    assert list(r["arms"]) == ["none", "early", "late"] and r["rounds"] == 2 and r["seeds"] == [0]
    for name, arm in r["arms"].items():
        assert set(arm["final"]) == {"test_acc", "test_greedy_acc", "U_s", "U_v", "G"}
        for stats in arm["final"].values():
            assert set(stats) == {"mean", "sd", "values"} and len(stats["values"]) == 1
            assert stats["sd"] is None                          # one seed: no spread
        assert 0 <= arm["final"]["test_acc"]["mean"] <= 1
        assert arm["final"]["G"]["mean"] == pytest.approx(arm["final"]["U_s"]["mean"] - arm["final"]["U_v"]["mean"])
        assert len(arm["curve"]["U_s"]) == 3 and len(arm["eta"]) == 2
        assert [p.split("/")[-1] for p in arm["runs"]] == [f"{name}-s0"]
    assert r["arms"]["none"]["external_used"] == 0
    assert r["arms"]["early"]["external_used"] == r["arms"]["late"]["external_used"] == sweep["n_external"]
    assert r["arms"]["early"]["eta"] == [1.0, 0.0] and r["arms"]["late"]["eta"] == [0.0, 1.0]
    th = r["theory"]
    assert {"dynamics", "gamma", "gamma_pooled", "predicted", "noise", "verdict"} <= set(th)
    assert set(th["gamma"]) == {"early", "late"}
    assert isinstance(th["verdict"], str) and "Prop. 5.1" in th["verdict"]
    on_disk = strict_json((sweep["out"] / "sweep.json").read_text())
    assert on_disk == r


def test_the_table_renders_every_arm_and_the_verdict(sweep):
    text = render(sweep["result"])
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("arm") and "test_acc" in line)
    assert [line.split()[0] for line in lines[header + 1:header + 4]] == ["none", "early", "late"]
    assert "pass@k on the test split" in text and "verdict:" in text
    assert "[seed 0 (1/1), arm late (3/3)]" in sweep["stderr"]     # progress goes to stderr


def test_arms_share_round_0_and_late_repeats_none_until_its_data_arrives(sweep):
    out = sweep["out"]
    first = {name: read_records(out / f"{name}-s0") for name in ("none", "early", "late")}
    for name in ("early", "late"):
        assert first[name][0] == first["none"][0]
        for f in ("summary.json", "samples.jsonl", "test.jsonl"):
            assert (out / f"{name}-s0/rounds/000" / f).read_bytes() == (out / "none-s0/rounds/000" / f).read_bytes()
    # late spends nothing in round 1, so its round 1 is the control's; early's is not
    assert first["late"][1] == first["none"][1]
    assert first["early"][1]["external"] == sweep["n_external"] and first["early"][1] != first["none"][1]
    assert first["late"][2]["external"] == sweep["n_external"]
    assert (out / "late-s0/rounds/001/adapter/adapter_model.safetensors").is_file()
    ran = {name: [e["round"] for e in read_jsonl(out / f"{name}-s0/events.jsonl") if e["event"] == "round_finished"]
           for name in first}
    assert ran == {"none": [0, 1, 2], "early": [1, 2], "late": [2]}


def test_external_data_is_disjoint_from_prompts_and_test_and_used_once(sweep):
    out, splits = sweep["out"], sweep["splits"]
    pool = [it.id for it in splits.external]
    for name in ("none", "early", "late"):
        records = read_records(out / f"{name}-s0")
        used = [i for r in records for i in r["external_ids"]]
        assert len(used) == len(set(used)) == sum(r["external"] for r in records)
        assert used == pool[:len(used)]
        for t in range(3):
            prompts = {row["id"] for row in read_jsonl(out / f"{name}-s0/rounds/{t:03d}/samples.jsonl")}
            test = {row["id"] for row in read_jsonl(out / f"{name}-s0/rounds/{t:03d}/test.jsonl")}
            assert prompts == {it.id for it in splits.prompts} and test == {it.id for it in splits.test}
            assert not set(used) & (prompts | test)


def test_pass_at_k_is_in_rounds_jsonl_and_matches_the_exact_estimator(sweep):
    out = sweep["out"]
    for name in ("none", "early", "late"):
        for r in read_records(out / f"{name}-s0"):
            pk = r["pass_at_k"]
            assert list(pk) == ["1", "2", "4"]                 # k = 1, 2, 4, ... up to N = PASS_K
            rows = read_jsonl(out / f"{name}-s0/rounds/{r['round']:03d}/test.jsonl")
            for k in (1, 2, 4):
                exact = [1 - math.comb(PASS_K - sum(row["correct"][:PASS_K]), k) / math.comb(PASS_K, k)
                         for row in rows]
                assert pk[str(k)] == pytest.approx(sum(exact) / len(exact))
            assert pk["1"] == pytest.approx(sum(sum(row["correct"][:PASS_K]) for row in rows) / (PASS_K * len(rows)))
            assert 0 <= pk["1"] <= pk["2"] <= pk["4"] <= 1


def test_text_mode_prints_the_table_on_stdout(micro, tmp_path, capsys):
    path, overrides = micro
    argv = ["--profile", path, "--set", overrides[0], "--schedules", "uniform", "--rounds", "1",
            "--out", str(tmp_path / "s")]
    assert sweep_main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sweep {tmp_path / 's'}: profile micro, rounds 0..1")
    assert "\nnone " in out and "\nuniform " in out and "verdict:" in out
    assert "pass@k" not in out                                    # micro.toml records none
    assert (tmp_path / "s" / "sweep.json").is_file()


@pytest.mark.parametrize("args, says", [
    (["--schedules", "early,sometimes"], "unknown schedule 'sometimes'"),
    (["--schedules", "[0.5,-0.1]"], "negative share"),
    (["--schedules", "[0.7,0.6]"], "sum to 1.3 > 1"),
    (["--schedules", "[0.1,0.1,0.1]"], "lists 3 shares but the run has 2 rounds"),
    (["--schedules", "early,,late"], "empty entry"),
    (["--schedules", "[0.5,zero]"], "not a list of numbers"),
    (["--schedules", "none"], "at least one schedule that spends data"),
    (["--set", "external.schedule=[0.5,-0.1]"], "negative share"),
    (["--set", "external.schedule=[0.7,0.6]"], "sum to 1.3 > 1"),
    (["--set", "external.schedule=[0.2,0.2,0.2]"], "lists 3 shares but the run has 2 rounds"),
    (["--set", "task.n_external=0"], "no external pool"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--seeds", "two"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
    (["--profile", "no-such-profile"], "unknown profile"),
])
def test_bad_input_is_one_line_and_exit_2(args, says, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sweep", "--profile", str(MICRO_PROFILE), "--out", str(out)] + args
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("silab sweep: error: ") and says in err, err
    assert not out.exists()                                       # nothing written


def test_a_non_empty_sweep_folder_is_refused(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["sweep", "--profile", str(MICRO_PROFILE), "--out", str(tmp_path / "s")])
    assert exit_.value.code == 2 and "exists and is not empty" in capsys.readouterr().err


def test_verdict_compares_the_fitted_limits_with_a_test_sized_for_the_arms(tmp_path):
    """On recorded curves (arms = the organism run scaled): each arm's U_s∞ with its interval,
    the homogeneity test, and the first-order caveat of Prop. 5.1."""
    from silab.sweep.arms import parse_schedules
    from silab.sweep.fit import theory_view
    from silab.sweep.stats import summarize
    from test_lab_runs import make_sweep

    out = make_sweep(tmp_path)
    arms = parse_schedules("early,late", 10)
    runs = {a.label: [out / f"{a.folder}-s0"] for a in arms}
    summary = summarize(arms, runs, 256)
    for arm in arms:
        lim = summary[arm.label]["limits"]["U_s_inf"]
        assert lim["lo"] < lim["mean"] < lim["hi"] and lim["how"] == "fit"
    assert summary["early"]["limits"]["U_s_inf"]["mean"] == pytest.approx(
        0.8 * summary["none"]["limits"]["U_s_inf"]["mean"], rel=1e-3)
    view = theory_view(arms, summary, 1)
    text = view["verdict"]
    assert "first order" in text and "Π_t (1 + γη_t)" in text and "not the final-round U_s" in text
    assert "Fitted U_s∞: early" in text and view["limits_test"]["method"].startswith("Cochran")
    assert view["limits_test"]["dof"] == [1]
    table = render({"out": str(out), "profile": "tiny", "rounds": 10, "seeds": [0], "n_external": 256,
                    "schedules": [a.label for a in arms], "arms": summary, "theory": view,
                    "seconds": 1.0})
    assert "fitted limits" in table and "U_s∞" in table
