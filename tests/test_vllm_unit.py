"""The vLLM backend's pure logic, on CPU: nothing here pretends vLLM ran.

Engine outputs are built from small dataclasses with the field names of vllm.outputs
(RequestOutput / CompletionOutput) and vllm.logprobs.Logprob; the GPU side is tests/test_gpu.py.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from silab.config import load_profile
from silab.engine import vllm_backend as vb
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
    assert [vb.lora_rank_cap(r) for r in (1, 8, 9, 16, 17, 64, 300)] == [8, 8, 16, 16, 32, 64, 320]
    with pytest.raises(UsageError):
        vb.lora_rank_cap(1024)


def test_lora_book_never_reuses_an_id_name_or_folder(tmp_path):
    book = vb.LoRABook(tmp_path)
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


def test_samples_keep_hf_conventions(micro):
    """vLLM-shaped completions of the hf backend's own samples convert back to the same Samples:
    tokens keep the end-of-sequence token, n_tokens = len(tokens), text drops it."""
    from silab.engine.hf import HFBackend
    from silab.engine.organism import ensure_organism

    path, overrides = micro
    profile = load_profile(path, overrides)
    model_dir = ensure_organism("micro", profile.model.cache_dir)
    hf = HFBackend(profile, str(model_dir))
    prompts = ["12+34=", "56+78="]
    rows = hf.sample(prompts, 4, seed=3, progress=lambda d, n: None)
    outputs = [RequestOutput(str(i), [], None, [CompletionOutput(j, "", s.tokens, s.logprob, None)
                                               for j, s in enumerate(row)]) for i, row in enumerate(rows)]
    converted = vb.to_samples([vb.EXTRACT["sample"](o) for o in outputs], hf.tok, {hf.tok.eos_token_id})
    assert converted == rows
    assert any(s.tokens[-1] == hf.tok.eos_token_id for row in rows for s in row)


def test_sample_logprob_is_the_sum_of_raw_token_logprobs():
    """cumulative_logprob when vLLM gives it, else the sum of the sampled tokens' entries."""
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.0, 1.0, 1.0]])
    raw = logits.log_softmax(-1)
    tokens = [0, 2, 3]
    per_token = [{t: Logprob(float(raw[i, t]), 1), 1: Logprob(float(raw[i, 1]), 2)} for i, t in enumerate(tokens)]
    expected = float(sum(raw[i, t] for i, t in enumerate(tokens)))
    without = CompletionOutput(0, "", tokens, None, per_token)
    assert vb.completion_tokens_logprob(without) == (tokens, pytest.approx(expected, abs=1e-6))
    given = CompletionOutput(0, "", tokens, -1.25, per_token)
    assert vb.completion_tokens_logprob(given) == (tokens, -1.25)
    with pytest.raises(RuntimeError):
        vb.completion_tokens_logprob(CompletionOutput(0, "", tokens, None, None))


def test_judge_probs_from_top_k_and_the_exact_second_look():
    """Top-k raw log-probs give P(token | text) exactly; a token outside the top k is left for the
    prompt-logprob request and then read from that request's last position."""
    logits = torch.tensor([[4.0, 1.0, 0.5, -3.0, 0.0], [0.0, 0.0, 5.0, 0.2, 0.1]])
    lp = logits.log_softmax(-1)
    k = 2
    top_vals, top_ids = lp.topk(k, -1)
    outs = [RequestOutput(str(r), [], None, [CompletionOutput(0, "", [int(top_ids[r, 0])], None,
            [{int(i): Logprob(float(v)) for i, v in zip(top_ids[r], top_vals[r])}])]) for r in range(2)]
    cols = [0, 3]                                   # "True", "False"
    probs, missing = vb.probs_from_top([vb.EXTRACT["top"](o) for o in outs], cols)
    assert missing == [(0, 1), (1, 0)]             # row 1: token 3 is its second most likely
    assert probs[0, 0] == pytest.approx(float(lp[0, 0].exp()), abs=1e-7)
    for r, c in missing:                            # the prompt ends with the candidate token
        last = RequestOutput("x", [], [None, {cols[c]: Logprob(float(lp[r, cols[c]]), 3)}])
        probs[r, c] = math.exp(vb.EXTRACT["prompt_last"](last)[cols[c]])
    np.testing.assert_allclose(probs, lp.exp()[:, cols].numpy(), atol=1e-7)


def test_probe_mismatch_finds_changed_tokens_or_logprobs():
    before = [([5, 6, 1], -1.0), ([7, 1], -0.5)]
    assert vb.probe_mismatches(before, [([5, 6, 1], -1.0 + 1e-5), ([7, 1], -0.5)]) == []
    assert vb.probe_mismatches(before, [([5, 6, 1], -1.0), ([8, 1], -0.5)]) == [1]
    assert vb.probe_mismatches(before, [([5, 6, 1], -1.2), ([7, 1], -0.5)]) == [0]


def test_engine_kwargs_follow_the_profile(micro):
    path, overrides = micro
    profile = load_profile(path, overrides + ["model.gpu_memory_utilization=0.5", "model.tensor_parallel_size=2",
                                              "model.dtype=bfloat16", "lora.rank=12"])
    kw = vb.engine_kwargs(profile, "/m", model_max_len=32, env={})
    assert kw["gpu_memory_utilization"] == 0.5 and kw["tensor_parallel_size"] == 2 and kw["dtype"] == "bfloat16"
    assert kw["max_model_len"] == 32                       # the model's limit wins over the profile's 4096
    assert kw["max_lora_rank"] == 16 and kw["enable_lora"] and kw["enable_sleep_mode"]
    assert kw["logprobs_mode"] == "raw_logprobs" and kw["seed"] == profile.seed
    assert "distributed_executor_backend" not in kw
    kw = vb.engine_kwargs(profile, "/m", env={"SILAB_VLLM_EXECUTOR": "ray",
                                               "SILAB_VLLM_ENGINE_ARGS": '{"enforce_eager": true}'})
    assert kw["distributed_executor_backend"] == "ray" and kw["enforce_eager"] is True and kw["max_model_len"] == 4096
    with pytest.raises(UsageError):
        vb.engine_kwargs(profile, "/m", env={"SILAB_VLLM_ENGINE_ARGS": "{oops"})
    with pytest.raises(UsageError, match="bfloat16"):          # vLLM's LoRA kernels: no float32
        vb.engine_kwargs(load_profile(path, overrides), "/m", env={})


def test_replicas_get_disjoint_gpus_and_even_shares():
    assert vb.replica_gpu_groups(["0", "1", "2", "3"], 2, 2) == [["0", "1"], ["2", "3"]]
    with pytest.raises(UsageError):
        vb.replica_gpu_groups(["0", "1", "2"], 2, 2)
    parts = vb.even_slices(10, 4)
    assert [s.stop - s.start for s in parts] == [3, 3, 2, 2] and parts[-1].stop == 10


def test_progress_bar_reports_finished_requests_as_vllm_drives_it():
    """The calls LLM._validate_and_add_requests / _run_engine make (vllm/entrypoints/llm.py)."""
    seen = []
    bar_cls = vb._progress_bar(seen.append)
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
    profile = load_profile(path, overrides + ["model.backend=vllm", "model.dtype=bfloat16"])
    with pytest.raises(UsageError, match="pip install"):
        vb.VLLMBackend(profile, "/nonexistent")
