"""The vLLM backend on a real GPU, with the micro organism as the model.

Skipped cleanly where vllm or CUDA is absent. Run: pytest -m gpu tests/test_gpu.py
(any extra vLLM engine arguments: SILAB_VLLM_ENGINE_ARGS='{"enforce_eager": true}', the default here).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from silab.config import load_profile  # noqa: E402
from silab.engine import session  # noqa: E402
from silab.engine.backends.hf import HFBackend  # noqa: E402
from silab.engine.organism import ensure_organism  # noqa: E402
from silab.engine.tokens import encode_prompt  # noqa: E402
from silab.runs.store import read_records  # noqa: E402

# bfloat16: vLLM serves LoRA adapters in bfloat16 / float16 only; the hf references use the same dtype
GPU_SET = ["model.backend=vllm", "model.device=cuda", "model.dtype=bfloat16", "model.gpu_memory_utilization=0.3"]
NOOP = lambda done, total: None  # noqa: E731


@pytest.fixture(scope="module", autouse=True)
def _eager_engine():
    """CUDA graphs and torch.compile take longer than these tiny runs; tests run eager."""
    saved = os.environ.get("SILAB_VLLM_ENGINE_ARGS")
    os.environ.setdefault("SILAB_VLLM_ENGINE_ARGS", json.dumps({"enforce_eager": True}))
    yield
    if saved is None:
        os.environ.pop("SILAB_VLLM_ENGINE_ARGS", None)


@pytest.fixture(scope="module")
def gpu(organism_cache):
    """(profile, model folder, prompts) for the micro organism on the vllm backend."""
    from silab.tasks import format_prompt, get_task, split_items

    profile = load_profile(str(Path(__file__).parent / "micro.toml"),
                           [f"model.cache_dir={organism_cache}", *GPU_SET])
    model_dir = str(ensure_organism("micro", organism_cache))
    splits = split_items(get_task(profile.task.name), profile.task, profile.seed)
    prompts = [format_prompt(profile.task, item) for item in splits.prompts]
    return profile, model_dir, prompts


@pytest.fixture(scope="module")
def backend(gpu):
    from silab.engine.backends.vllm import VLLMBackend

    profile, model_dir, _ = gpu
    b = VLLMBackend(profile, model_dir)
    yield b
    b.close()


def hf_reference(profile, model_dir, adapter: str | None) -> HFBackend:
    hf = HFBackend(profile, model_dir)
    hf.load_adapter(Path(adapter) if adapter else None)
    return hf


@torch.no_grad()
def teacher_forced_logprob(hf: HFBackend, prompt: str, tokens: list[int]) -> float:
    p = hf.tok.encode(prompt, add_special_tokens=False)
    ids = torch.tensor([p + tokens], device=hf.device)
    lp = hf.model(input_ids=ids).logits[0].float().log_softmax(-1)
    return float(sum(lp[len(p) - 1 + i, t] for i, t in enumerate(tokens)))


def tolerance(n_tokens: int) -> float:
    """bfloat16 on both sides, different kernels: |delta log-prob| per token well under 0.05."""
    return 1e-3 + 5e-2 * n_tokens


def share_equal(a: list, b: list) -> float:
    return sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def test_two_rounds_on_the_vllm_backend(gpu, tmp_path):
    profile, _, _ = gpu
    events = []
    loop = session.new_run(profile, str(tmp_path / "run")).loop(events.append)
    try:
        while loop.next_round < 3:
            loop.run_round()
        records = read_records(tmp_path / "run")
        assert [r["round"] for r in records] == [0, 1, 2]
        for r in records:
            assert r["G"] == pytest.approx(r["U_s"] - r["U_v"])
            assert 0 <= r["test_acc"] <= 1
        ids = [r["train"]["vllm"]["lora_id"] for r in records[1:]]
        assert ids == sorted(set(ids)), "each round must be served under a new LoRA id"
        assert loop.backend.engine_builds == 1, "the engine must not be rebuilt between rounds"
        for t in (1, 2):
            assert (tmp_path / "run" / "rounds" / f"{t:03d}" / "adapter" / "adapter_model.safetensors").is_file()
    finally:
        loop.backend.close()


def test_sleep_and_wake_give_the_same_greedy_answers(backend, gpu):
    """The check itself: greedy answers of the probe prompts from an empty prefix cache, before
    sleep(level=1) and after wake_up(), token for token (raises SleepWakeMismatch otherwise)."""
    _, _, prompts = gpu
    backend.sample(prompts[:4], 2, seed=1, progress=NOOP)   # also fixes the probe prompts
    assert backend.probe_ids and backend.sleep_wake_check() > 0


def test_each_trained_adapter_is_served_fresh(backend, gpu):
    """Two trainings towards different answers: each adapter is served under a new id, name and
    folder, and vLLM answers what that adapter learned, as an hf model holding it does (a stale
    adapter would keep the first answer)."""
    profile, model_dir, prompts = gpu
    texts = [profile.verify.tf_template.format(prompt=p, response=r) for p in prompts for r in ("57", "101")]
    tokens = [profile.verify.true_token, profile.verify.false_token]
    served = []
    for round_seed, answer in ((11, "11"), (12, "99")):
        target = encode_prompt(backend.tok, answer) + [backend.end_id]
        examples = [(encode_prompt(backend.tok, p), target) for p in prompts] * 40   # ~10 optimiser steps
        stats = backend.train(examples, lr=1e-2, seed=round_seed, progress=NOOP)
        assert stats["vllm"]["lora_id"] == backend.lora.id and Path(backend.lora.path).is_dir()
        served.append(backend.lora)
        greedy = backend.greedy(prompts, NOOP)
        assert share_equal(greedy, [answer] * len(prompts)) >= 0.75, (answer, greedy)
        hf = hf_reference(profile, model_dir, backend.lora.path)
        try:
            assert share_equal(hf.greedy(prompts, NOOP), greedy) >= 0.75
            got, want = backend.next_token_probs(texts, tokens, NOOP), hf.next_token_probs(texts, tokens, NOOP)
            assert abs(got - want).max() < 2e-2
        finally:
            hf.close()
    assert served[0].id < served[1].id and served[0].name != served[1].name and served[0].path != served[1].path
    assert not Path(served[0].path).exists(), "the previous adapter's folder is retired"


def test_sample_logprobs_agree_with_hf_on_the_same_tokens(backend, gpu):
    profile, model_dir, prompts = gpu
    rows = backend.sample(prompts, 4, seed=5, progress=NOOP)
    hf = hf_reference(profile, model_dir, backend.lora.path if backend.lora else None)
    try:
        for prompt, row in zip(prompts, rows):
            for s in row:
                assert s.n_tokens == len(s.tokens) >= 1
                want = teacher_forced_logprob(hf, prompt, s.tokens)
                assert s.logprob == pytest.approx(want, abs=tolerance(s.n_tokens))
    finally:
        hf.close()


def test_sampling_is_reproducible(backend, gpu):
    """Per-prompt seeds: the same call gives the same samples. vLLM is not batch-invariant in
    bfloat16 (a prefix-cache hit changes the kernels' path), so a rare near-tie may flip."""
    _, _, prompts = gpu
    tokens = lambda rows: [s.tokens for row in rows for s in row]  # noqa: E731
    first = tokens(backend.sample(prompts, 3, seed=9, progress=NOOP))
    assert share_equal(tokens(backend.sample(prompts, 3, seed=9, progress=NOOP)), first) >= 0.9
    assert share_equal(tokens(backend.sample(prompts, 3, seed=10, progress=NOOP)), first) < 1.0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_data_parallel_replicas_match_one_engine(backend, gpu):
    from silab.config import apply_overrides
    from silab.engine.backends.vllm import VLLMBackend

    profile, model_dir, prompts = gpu
    one = backend.sample(prompts, 2, seed=4, progress=NOOP)
    pool = VLLMBackend(apply_overrides(profile, ["model.data_parallel_size=2"]), model_dir)
    try:
        if backend.lora is not None:
            pool.load_adapter(Path(backend.lora.path))
        two = pool.sample(prompts, 2, seed=4, progress=NOOP)
        assert share_equal([s.tokens for row in two for s in row], [s.tokens for row in one for s in row]) >= 0.9
        pool.sleep_wake_check()
    finally:
        pool.close()
