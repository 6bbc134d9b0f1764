"""The vLLM backend (`model.backend = "vllm"`): vLLM samples and judges, peft trains.

Same contract as the hf backend (silab/engine/backends/hf.py, the reference semantics):

* One vLLM engine for the whole run, built lazily in the calling (main) thread, never reloaded
  (silab/engine/vllm_engine.py; replicas in silab/engine/vllm_replicas.py). Prompts go in as token ids encoded as the hf backend encodes them
  (silab.engine.tokens.encode_prompt); vLLM never tokenizes or detokenizes.
* Sampling: `n = N` per prompt with the profile's temperature / top_p, stopping on every stop id
  (silab.engine.tokens.stop_token_ids). A sample's tokens run up to and including the first stop id,
  its log-prob is the sum of their raw log-probs (vLLM's `logprobs_mode="raw_logprobs"`: log_softmax
  of the logits before temperature / top-p, vllm/v1/sample/sampler.py), so U_s and U_v mean the same
  on both backends. Every prompt carries its own seed (vLLM seeds the n children seed + j), so a
  prompt's samples do not depend on batching or on how prompts are split over replicas.
* Judging: one step whose `logprob_token_ids` are every first-token variant of the answer words
  (silab.engine.tokens.answer_token_ids); P(word | text) is the sum over its variants of the raw
  full-vocabulary probabilities. The values come from the decode position, never from
  `prompt_logprobs`, which vLLM reports in an order-dependent way when prefix caching is on.
* Training: the hf backend itself (composed, not copied) trains the LoRA adapter on the token-id
  examples; each round's adapter is saved to a fresh folder and served through a new `LoRARequest`
  (new name, int id and path: vLLM caches adapters by id, so a reused id would serve stale weights).
  On CUDA vLLM sleeps (level 1) meanwhile, and a fixed-seed greedy probe before sleeping and after
  waking must match token for token (vLLM has had sleep/wake bugs that corrupt LoRA state, e.g.
  vllm-project/vllm#53888), else SleepWakeMismatch. Off CUDA there is no sleep mode: the engine
  keeps its memory while peft trains, and the log says so once.
* Several GPUs: `model.tensor_parallel_size`, `pipeline_parallel_size` and `distributed_executor_
  backend = "ray"` go to vLLM; `model.data_parallel_size = R` starts R engine replicas, each in its
  own process with its own GPUs. Training runs on one device.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from silab.config import Profile
from silab.engine.backend import Example, Progress, Sample, to_samples
from silab.engine.tokens import answer_token_ids, cut_at_stop, decode_responses, encode_prompt, end_of_turn_id, \
    stop_token_ids
from silab.engine.vllm_engine import (MAX_SCORED_IDS, LocalEngine, LoRABook, LoRARef, engine_kwargs, platform_device,
                                      sleep_mode_available)
from silab.engine.vllm_replicas import ReplicaPool, replica_gpu_groups, visible_gpus
from silab.errors import UsageError

log = logging.getLogger("silab.engine.vllm")

SEQS_PER_CALL = 8192       # sequences per generate call and replica (bounds host memory for logprobs)
PROBE_PROMPTS = 4          # prompts in the sleep/wake check
PROBE_TOKENS = 32
PROBE_LOGPROB_TOL = 1e-3   # per-sequence |delta log-prob| allowed between the two probe runs


class SleepWakeMismatch(RuntimeError):
    """The engine answered differently after waking up: its weights or adapter state are corrupt."""


# ---------------------------------------------------------------------------------------------
# what this machine needs (silab.engine.backends.check calls it before a run folder is written)

def check(profile: Profile) -> None:
    """vLLM installed, and a dtype its LoRA kernels serve on this platform: the one place these are
    refused, for `silab run`, the lab's engine, `silab doctor` and a backend built directly."""
    if importlib.util.find_spec("vllm") is None:
        raise UsageError("model.backend = \"vllm\" needs vLLM: pip install -e '.[gpu]' on a CUDA box, "
                         "bash .ci/vllm-env for vLLM's CPU build (or --set model.backend=hf)")
    check_dtype(profile, platform_device())


def check_dtype(profile: Profile, device: str) -> None:
    if profile.model.dtype == "float32" and device != "cpu":
        # vLLM's GPU LoRA kernels take float16 / bfloat16 only (vllm-project/vllm#10348, #14827)
        raise UsageError("model.dtype = float32: vLLM serves LoRA adapters on a GPU in bfloat16 or float16 only; "
                         "set model.dtype = bfloat16 (e.g. --set model.dtype=bfloat16)")


# ---------------------------------------------------------------------------------------------
# pure pieces (tested without an engine in tests/test_vllm_unit.py)

def prompt_seeds(seed: int, count: int, n: int) -> list[int]:
    """One seed per prompt, from (seed, prompt index) only. vLLM seeds the n samples of a prompt with
    seed + j (vllm/v1/engine/parallel_sampling.py), so seeds are spaced n apart from a hashed start."""
    seeds = []
    for i in range(count):
        digest = hashlib.blake2b(struct.pack("<QQ", seed % 2**64, i), digest_size=8).digest()
        seeds.append(int.from_bytes(digest, "little") % (2**62 - n))
    return seeds


def run_in_chunks(run, total: int, size: int, progress: Progress) -> list:
    """run(start, stop, report) over chunks of `size` requests, concatenated. report(k) says k of the
    chunk's requests are done; progress sees each count once, a chunk's end included (a replica's
    reports are throttled, so the last may be missing; a repeat would print a phase's line twice)."""
    out, last = [], [-1]

    def report(done: int) -> None:
        if done != last[0]:
            last[0] = done
            progress(done, total)

    for start in range(0, total, size):
        stop = min(total, start + size)
        out.extend(run(start, stop, lambda k, start=start, stop=stop: report(min(start + k, stop))))
        report(stop)
    return out


def word_probs(scores: Sequence[dict[int, float]], groups: Sequence[Sequence[int]]) -> np.ndarray:
    """P(word | text) per row and word: the sum of exp(raw log-prob) over the word's variant ids."""
    probs = np.zeros((len(scores), len(groups)))
    for r, row in enumerate(scores):
        for c, group in enumerate(groups):
            probs[r, c] = sum(math.exp(row[t]) for t in group)
    return probs


def probe_mismatches(before: Sequence, after: Sequence, tol: float = PROBE_LOGPROB_TOL) -> list[int]:
    """Indices of probe prompts whose greedy (tokens, log-prob) differ between two runs."""
    bad = []
    for i, ((t0, lp0), (t1, lp1)) in enumerate(zip(before, after)):
        if list(t0) != list(t1) or abs(sum(lp0) - sum(lp1)) > tol:
            bad.append(i)
    if len(before) != len(after):
        bad.append(min(len(before), len(after)))
    return bad


# ---------------------------------------------------------------------------------------------
# the backend

class VLLMBackend:
    def __init__(self, profile: Profile, model_path: str):
        check(profile)
        from transformers import AutoConfig, AutoTokenizer

        m = profile.model
        self.p, self.model_path = profile, model_path
        self.tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=m.trust_remote_code)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.stop_ids = stop_token_ids(self.tok, model_path)
        self.end_id = end_of_turn_id(self.tok)
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=m.trust_remote_code)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.device = platform_device()   # check() has asked it once already: vLLM keeps it
        self.can_sleep = sleep_mode_available()
        self.kwargs = engine_kwargs(profile, model_path, getattr(text_config, "max_position_embeddings", None),
                                    device=self.device, can_sleep=self.can_sleep)
        if self.kwargs["max_model_len"] < m.max_model_len:
            log.info("max_model_len capped at the model's %d positions", self.kwargs["max_model_len"])
        if not self.can_sleep:  # a warning so that `silab run` shows it (nothing configures logging)
            log.warning("vLLM on %s: no sleep mode, so sleep/wake is skipped (the engine keeps its memory "
                     "while peft trains)%s", self.device,
                     f"; KV cache {self.kwargs.get('kv_cache_memory_bytes', 0) / 2**20:.0f} MiB of RAM"
                     if self.device == "cpu" else "")
        self.replicas = m.data_parallel_size
        root = os.environ.get("SILAB_VLLM_ADAPTER_DIR") or None  # multi-node: a folder every node sees
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.book = LoRABook(Path(tempfile.mkdtemp(prefix="silab-vllm-", dir=root)))
        self.engine: LocalEngine | ReplicaPool | None = None
        self.engine_builds = 0
        self.lora: LoRARef | None = None       # the adapter vLLM serves; None = the base model (pi_0)
        self.trainer = None                    # an HFBackend, built the first time we train
        self.trainer_resident: bool | None = None
        self.check_wake = self.can_sleep and os.environ.get("SILAB_VLLM_WAKE_CHECK", "1") != "0"
        self.probe_ids: list[list[int]] = []

    # --- engine ---------------------------------------------------------------------------------
    def _engine(self):
        if self.engine is None:
            if self.replicas > 1:
                per = self.kwargs["tensor_parallel_size"] * self.kwargs.get("pipeline_parallel_size", 1)
                self.engine = ReplicaPool(self.kwargs, replica_gpu_groups(visible_gpus(), self.replicas, per))
            else:
                self.engine = LocalEngine(self.kwargs)
            self.engine_builds += 1
        return self.engine

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [encode_prompt(self.tok, t) for t in texts]

    def _run(self, kind: str, prompts: list[list[int]], params: list[dict], progress: Progress,
             per_prompt: int = 1) -> list:
        engine = self._engine()
        lora = self.lora.spec() if self.lora else None
        size = max(1, SEQS_PER_CALL * engine.replicas // max(1, per_prompt))
        return run_in_chunks(lambda a, b, report: engine.run(kind, prompts[a:b], params[a:b], lora, report),
                             len(prompts), size, progress)

    def sampling_params(self, n: int, seed: int | None) -> dict:
        """One prompt's sampling request: the profile's temperature / top_p, raw log-probs, all stop ids."""
        s = self.p.sampling
        return dict(n=n, temperature=s.temperature, top_p=s.top_p, seed=seed, logprobs=0,
                    max_tokens=self.p.model.max_new_tokens, stop_token_ids=list(self.stop_ids), detokenize=False)

    def greedy_params(self, max_tokens: int | None = None) -> dict:
        return dict(n=1, temperature=0.0, max_tokens=max_tokens or self.p.model.max_new_tokens,
                    stop_token_ids=list(self.stop_ids), detokenize=False)

    # --- generation -----------------------------------------------------------------------------
    def sample(self, prompts: list[str], n: int, seed: int, progress: Progress) -> list[list[Sample]]:
        ids = self._encode(prompts)
        if not self.probe_ids:
            self.probe_ids = ids[:PROBE_PROMPTS]
        params = [self.sampling_params(n, sd) for sd in prompt_seeds(seed, len(ids), n)]
        return to_samples(self._run("sample", ids, params, progress, per_prompt=n), self.tok, self.stop_ids)

    def greedy(self, prompts: list[str], progress: Progress) -> list[str]:
        ids = self._encode(prompts)
        tokens = self._run("greedy", ids, [self.greedy_params()] * len(ids), progress)
        return decode_responses(self.tok, [cut_at_stop(t, self.stop_ids)[0] for t in tokens], self.stop_ids)

    # --- judging --------------------------------------------------------------------------------
    def next_token_probs(self, texts: list[str], words: list[str], progress: Progress) -> np.ndarray:
        groups = answer_token_ids(self.tok, words)
        wanted = sorted({t for g in groups for t in g})
        ids = self._encode(texts)
        scores: list[dict[int, float]] = [{} for _ in ids]
        for start in range(0, len(wanted), MAX_SCORED_IDS):   # vLLM scores up to 128 given ids a request
            chunk = wanted[start:start + MAX_SCORED_IDS]
            params = [dict(n=1, temperature=0.0, max_tokens=1, logprob_token_ids=chunk, detokenize=False)] * len(ids)
            for row, got in zip(scores, self._run("scores", ids, params, progress)):
                row.update({t: got[t] for t in chunk})
        return word_probs(scores, groups)

    # --- the sleep / wake check ------------------------------------------------------------------
    def _probe(self) -> list[list]:
        params = [dict(self.greedy_params(min(PROBE_TOKENS, self.p.model.max_new_tokens)), seed=0, logprobs=0)]
        return self.engine.probe("sample", self.probe_ids, params * len(self.probe_ids),
                                 self.lora.spec() if self.lora else None)

    def _compare_probes(self, before: list[list], after: list[list]) -> None:
        for r, (b, a) in enumerate(zip(before, after)):
            bad = probe_mismatches([x[0] for x in b], [x[0] for x in a])
            if bad:
                i = bad[0]
                raise SleepWakeMismatch(
                    f"vLLM replica {r} answers differently after sleep/wake-up with the same adapter "
                    f"({self.lora.name if self.lora else 'base model'}): prompt {i} gave "
                    f"{b[i][0] if i < len(b) else None} before and {a[i][0] if i < len(a) else None} after. "
                    "The engine's weights or LoRA state are corrupt; try another vLLM version or set "
                    "SILAB_VLLM_WAKE_CHECK=0 at your own risk.")

    def sleep_wake_check(self) -> float:
        """Probe, sleep, wake, probe again; raises SleepWakeMismatch on any difference. Returns seconds."""
        if not self.can_sleep:
            raise RuntimeError(f"vLLM has no sleep mode on {self.device}")
        start = time.perf_counter()
        before = self._probe()
        self.engine.sleep()
        self.engine.wake_up()
        self._compare_probes(before, self._probe())
        return time.perf_counter() - start

    # --- training -------------------------------------------------------------------------------
    def _trainer_on_device(self):
        import torch

        if self.trainer is None:
            from silab.engine.backends.hf import HFBackend

            self.trainer = HFBackend(self.p, self.model_path)  # seeded LoRA init, as on the hf backend
            self.trainer.load_adapter(Path(self.lora.path) if self.lora else None)
        elif next(self.trainer.model.parameters()).device.type != self.trainer.device.type:
            self.trainer.model.to(self.trainer.device)
        if self.trainer_resident is None:
            self.trainer_resident = self._fits_beside_vllm(torch)
            log.info("trainer weights %s between rounds", "stay on the device" if self.trainer_resident
                     else "are parked in CPU RAM")
        return self.trainer

    def _fits_beside_vllm(self, torch) -> bool:
        """Keep the trainer's weights on the GPU between rounds when vLLM's budget still fits beside them."""
        forced = os.environ.get("SILAB_VLLM_TRAINER_RESIDENT")
        if forced in ("0", "1"):
            return forced == "1"
        device = self.trainer.device
        if device.type != "cuda":
            return True
        _, total = torch.cuda.mem_get_info(device)
        weights = sum(p.numel() * p.element_size() for p in self.trainer.model.parameters())
        return weights + self.p.model.gpu_memory_utilization * total + 2 * 2**30 <= total

    def _park_trainer(self) -> None:
        import torch

        if not self.trainer_resident:
            self.trainer.model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def train(self, examples: list[Example], lr: float, seed: int, progress: Progress) -> dict:
        timing: dict[str, float] = {}
        clock = time.perf_counter

        def lap(name: str, since: float) -> None:
            timing[name] = round(timing.get(name, 0.0) + clock() - since, 3)

        start = clock()
        # no engine yet (a resumed run trains first) or no sleep mode (CPU): nothing to put to sleep
        engine = self.engine if self.can_sleep else None
        before = None
        if engine is not None:
            if self.check_wake and self.probe_ids:
                t = clock()
                before = self._probe()
                lap("check_s", t)
            t = clock()
            engine.sleep()
            lap("sleep_s", t)
        try:
            t = clock()
            trainer = self._trainer_on_device()
            stats = trainer.train(examples, lr, seed, progress)
            ref = self.book.issue()
            trainer.save_adapter(Path(ref.path))
            self._park_trainer()
            lap("train_s", t)
        finally:
            if engine is not None:
                t = clock()
                engine.wake_up()
                lap("wake_s", t)
        if before is not None:
            t = clock()
            self._compare_probes(before, self._probe())  # same (previous) adapter as before sleeping
            lap("check_s", t)
        self._serve(ref)
        lap("total_s", start)
        return {**stats, "vllm": {**timing, "lora_id": ref.id, "slept": engine is not None,
                                  "trainer_resident": bool(self.trainer_resident)}}

    # --- adapters -------------------------------------------------------------------------------
    def _serve(self, ref: LoRARef | None) -> None:
        old, self.lora = self.lora, ref
        if old is not None and old != ref:
            self.book.retire(old)

    def save_adapter(self, path: Path) -> None:
        if self.lora is not None:
            shutil.copytree(self.lora.path, path, dirs_exist_ok=True)
        elif self.trainer is not None:
            self.trainer.save_adapter(path)
        else:
            raise RuntimeError("no adapter to save: the engine serves the base model (round 0)")

    def load_adapter(self, path: Path | None) -> None:
        """Serve a saved adapter (copied to a fresh folder, under a new id), or the base model for None
        (pi_0: a fresh LoRA adapter is the identity); the trainer continues from the same weights."""
        if path is None:
            self._serve(None)
        else:
            ref = self.book.issue()
            shutil.copytree(path, ref.path)
            self._serve(ref)
        if self.trainer is not None:
            self.trainer.load_adapter(Path(self.lora.path) if self.lora else None)

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()
        if self.trainer is not None:
            self.trainer.close()
            self.trainer = None
        shutil.rmtree(self.book.root, ignore_errors=True)


Backend = VLLMBackend
