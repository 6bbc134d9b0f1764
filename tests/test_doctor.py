"""`silab doctor`, run as a user runs it: versions, devices, the self-test, the verdict, exit code."""
from __future__ import annotations

import subprocess
import sys


def doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "silab.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=600)


def test_doctor_passes_on_the_micro_organism(micro):
    path, overrides = micro
    out = doctor("--profile", path, *[a for o in overrides for a in ("--set", o)])
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("python ") and any(line.startswith("torch ") for line in lines)
    for check in ("sample", "judge", "train one step", "adapter save/load/serve"):
        assert any(line.strip().startswith(f"ok   {check}:") for line in lines), out.stdout
    assert any("skip sleep/wake probe" in line for line in lines)  # the hf backend never sleeps
    assert lines[-1] == "verdict: all checks passed"


def test_doctor_reports_a_failing_check_and_exits_1(micro):
    """A judge whose two answer words start with the same token cannot tell them apart."""
    path, overrides = micro
    out = doctor("--profile", path, *[a for o in overrides for a in ("--set", o)],
                 "--set", "verify.true_token=True", "--set", "verify.false_token=True")
    assert out.returncode == 1, out.stdout + out.stderr
    assert any(line.strip().startswith("FAIL judge:") and "both start with token" in line for line in out.stdout.splitlines())
    assert out.stdout.splitlines()[-1] == "verdict: FAILED (judge)"
    assert "Traceback" not in out.stdout + out.stderr


def test_doctor_refuses_a_missing_backend_as_bad_input(micro):
    path, overrides = micro
    try:
        import vllm  # noqa: F401
    except ImportError:
        out = doctor("--profile", path, "--set", "model.backend=vllm")
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "vllm" in out.stderr.lower()
        return
    out = doctor("--profile", path, "--set", "model.device=cuda:7")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
