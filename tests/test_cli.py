"""`silab run` as a user meets it: bad input, crashes, Ctrl-C and resume, in real subprocesses."""
from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from silab import cli

# a micro run whose rounds last long enough (about a second) to be interrupted mid-round
SLOW = ["task.n_prompts=128", "sampling.n_samples=64", "verify.batch_size=512", "task.n_test=128",
        "sampling.test_samples=16"]


def silab(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "silab.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def run_main(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    return done.value.code, capsys.readouterr().err


@pytest.fixture
def bad_profile(tmp_path):
    def write(text):
        path = tmp_path / "bad.toml"
        path.write_text(text)
        return str(path)
    return write


@pytest.mark.parametrize("case", [
    "missing profile", "malformed", "unknown key", "wrong type", "n_samples < 1", "sigma > 1",
    "negative rounds", "rounds below the schedule", "model path", "existing run folder", "resume non-run",
    "no vllm", "no cuda",
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, micro, bad_profile, capsys):
    profile, overrides = micro
    run_dir = tmp_path / "run"
    argv = {
        "missing profile": ["run", "--profile", str(tmp_path / "nope.toml")],
        "malformed": ["run", "--profile", bad_profile("[task\nname = 1")],
        "unknown key": ["run", "--profile", bad_profile("[sampling]\ntemperatur = 1.0")],
        "wrong type": ["run", "--profile", bad_profile("rounds = 'ten'")],
        "n_samples < 1": ["run", "--profile", profile, "--set", "sampling.n_samples=0"],
        "sigma > 1": ["run", "--profile", profile, "--set", "verify.sigma=1.2"],
        "negative rounds": ["run", "--profile", profile, "--rounds", "-1"],
        "rounds below the schedule": ["run", "--profile", profile, "--rounds", "1",   # --set rounds=1 would be refused too
                                      "--set", "external.schedule=[0.2, 0.2, 0.2]", "--set", "rounds=5"],
        "model path": ["run", "--profile", profile, "--set", "model.path=/no/such/model"],
        "existing run folder": ["run", "--profile", profile, *sets(overrides)],
        "resume non-run": ["run", "--resume", str(tmp_path)],
        "no vllm": ["run", "--profile", profile, *sets(overrides), "--set", "model.backend=vllm",
                    "--set", "model.dtype=bfloat16"],
        "no cuda": ["run", "--profile", profile, *sets(overrides), "--set", "model.device=cuda"],
    }[case]
    if case == "no vllm" and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == "existing run folder":
        run_dir.mkdir()
        (run_dir / "notes.txt").write_text("mine")
    if "--resume" not in argv:
        argv += ["--run-dir", str(run_dir)]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, err = run_main(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("silab run: error:"), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    done = silab("run", "--profile", "tiny", "--set", "verify.sigma=7", "--run-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr.strip() == ("silab run: error: --set: key 'verify.sigma' must be <= 1.0, got 7.0 "
                                   "(verifier threshold: a sample passes with score >= sigma)")
    assert not (tmp_path / "r").exists()


def wait_for_event(events: Path, proc, match, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if events.is_file():
            for line in events.read_text().splitlines():
                try:
                    if match(json.loads(line)):
                        return
                except json.JSONDecodeError:
                    pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    raise AssertionError("event never came")


def numbers(run_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    return [(r["round"], round(r["U_s"], 6), round(r["U_v"], 6), r["solver_acc"], r["test_acc"]) for r in rows]


# A shell starts `cmd &` with SIGINT ignored and Python keeps an ignored SIGINT ignored, as silab
# does: so a test that presses Ctrl-C resets it first, whatever this pytest inherited (a tiny
# launcher that execs silab in the same process; preexec_fn is not safe with torch's threads).
AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'silab.cli', *sys.argv[1:]])")


def start(args, **kw):
    """`silab ARGS` as a user at a terminal starts it (SIGINT at its default)."""
    return subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_mid_round_then_resume_matches_an_uninterrupted_run(tmp_path, micro):
    profile, overrides = micro
    args = ["run", "--profile", profile, "--rounds", "2", *sets(overrides + SLOW)]
    whole = silab(*args, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    run_dir = tmp_path / "crashed"
    proc = start([*args, "--run-dir", str(run_dir)])
    wait_for_event(run_dir / "events.jsonl", proc,
                   lambda e: e["event"] == "phase_started" and e["round"] == 2 and e["phase"] == "sample")
    proc.kill()
    proc.wait()
    assert (run_dir / "rounds" / "001").is_dir()
    assert not (run_dir / "rounds" / "002").exists()
    assert [n[0] for n in numbers(run_dir)] == [0, 1]

    resumed = silab("run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after round 1" in resumed.stderr
    assert numbers(run_dir) == numbers(tmp_path / "whole")


def test_ctrl_c_keeps_completed_rounds_and_the_run_resumes(tmp_path, micro):
    profile, overrides = micro
    run_dir = tmp_path / "run"
    proc = start(["run", "--profile", profile, "--rounds", "2", "--run-dir", str(run_dir),
                  *sets(overrides + SLOW)])
    wait_for_event(run_dir / "events.jsonl", proc,
                   lambda e: e["event"] == "phase_started" and e["round"] == 1 and e["phase"] == "sample")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"silab run --resume {run_dir}" in err and "Traceback" not in err
    assert [n[0] for n in numbers(run_dir)] == [0]
    resumed = silab("run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert [n[0] for n in numbers(run_dir)] == [0, 1, 2]


def test_kill_stops_a_run_like_ctrl_c(tmp_path, micro):
    """SIGTERM (`kill PID`, whatever the caller's SIGINT disposition): the round in progress is
    dropped, completed ones stay, and the user is told how to resume."""
    profile, overrides = micro
    run_dir = tmp_path / "run"
    proc = start(["run", "--profile", profile, "--rounds", "2", "--run-dir", str(run_dir),
                  *sets(overrides + SLOW)])
    wait_for_event(run_dir / "events.jsonl", proc,
                   lambda e: e["event"] == "phase_started" and e["round"] == 1 and e["phase"] == "sample")
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert f"terminated: completed rounds are in {run_dir}" in err and "Traceback" not in err
    assert [n[0] for n in numbers(run_dir)] == [0]
    assert not (run_dir / "rounds" / "001").exists()


def test_profiles_lists_every_bundled_profile():
    done = silab("profiles")
    assert done.returncode == 0
    names = {line.split()[0] for line in done.stdout.splitlines()}
    assert {"tiny", "phi3_math"} <= names
    assert "INVALID" not in done.stdout


def test_profiles_keys_shows_each_key_with_its_type_default_rule_and_doc(capsys):
    from silab.config import keys
    with pytest.raises(SystemExit) as done:
        cli.main(["profiles", "--keys"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "verify.sigma = 0.5  (a number; >= 0.0, <= 1.0)\n    verifier threshold" in out
    assert "model.backend = \"hf\"  (a string; one of hf, vllm)" in out
    assert all(f"\n{k.name} = " in "\n" + out for k in keys())


def test_fit_reads_a_real_run_folder(capsys):
    """`silab fit` on a recorded 10-round run of the default profile (tests/data/recorded_tiny)."""
    run = Path(__file__).parent / "data" / "recorded_tiny"
    with pytest.raises(SystemExit) as done:
        cli.main(["fit", str(run), "--model", "all", "--holdout", "2", "--json"])
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out)
    coupled = result["run"]["models"]["coupled"]
    assert coupled["converged"] and 0 < coupled["params"]["lambda"] < 2
    assert coupled["r2"]["solver"] > 0.9 and coupled["heldout_mse"] is not None
    assert set(result["run"]["models"]) == {"coupled", "exp", "power", "exp2"}
