"""The vLLM backend (`model.backend = "vllm"`, pip extra `silab[gpu]`): vLLM samples and judges,
peft trains, both on the same GPU(s).

Same contract as the hf backend (silab/engine/hf.py, the reference semantics):

* One vLLM engine for the whole run, built lazily in the calling (main) thread, never reloaded.
  Prompts go in as token ids encoded exactly as the hf backend encodes them
  (`add_special_tokens=False`); vLLM never tokenizes or detokenizes (`skip_tokenizer_init`), and
  decoding, stop tokens and end-of-sequence handling follow hf.py.
* Sampling: `n = N` per prompt with the profile's temperature / top_p. A sample's log-prob is the
  sum of log pi(token) under the raw distribution: vLLM's `logprobs_mode="raw_logprobs"` (log_softmax
  of the logits before temperature / top-p, vllm/v1/sample/sampler.py) and `cumulative_logprob`,
  which vLLM sums from those per-token values (vllm/v1/engine/logprobs.py). So U_s / U_v mean the
  same on both backends. Every prompt carries its own seed (vLLM gives the n children seed + j), so
  a prompt's seeds do not depend on batching or on how prompts are split over replicas.
* Judging: one generated token with the top-k raw log-probs of the next position; a candidate token
  outside the top k is read exactly from a second request whose prompt ends with that token
  (`prompt_logprobs`). Both are full-vocabulary log-softmax values: P(token | text), as on hf.
* Training: the hf backend itself (composed, not copied) trains the LoRA adapter with peft while
  vLLM sleeps (level 1: weights to CPU RAM, KV cache dropped); each round's adapter is saved to a
  fresh folder and served through a new `LoRARequest` (new name, new int id, new path: vLLM caches
  adapters by id, so a reused id would serve stale weights). Before sleeping and after waking, a
  fixed-seed greedy generation of a few prompts under the unchanged adapter must match token for
  token (vLLM has had sleep/wake bugs that silently corrupt LoRA state, e.g. vllm-project/vllm#53888);
  a mismatch raises SleepWakeMismatch.
* Several GPUs: `model.tensor_parallel_size` (and `pipeline_parallel_size`, `distributed_executor_
  backend = "ray"` for multi-node, when the profile has those keys) go to vLLM; `model.data_parallel_
  size = R` starts R independent engine replicas, each in its own process with its own GPUs
  (vLLM's `LLM` refuses data_parallel_size > 1 in one process). Training runs on one GPU.
* dtype: bfloat16 or float16 (vLLM's LoRA kernels have no float32; float32 is a UsageError).

Extra engine arguments can be passed as JSON in SILAB_VLLM_ENGINE_ARGS (e.g. '{"enforce_eager": true}').
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import struct
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from silab.config import Profile
from silab.engine.backend import Progress, Sample
from silab.errors import UsageError

log = logging.getLogger("silab.engine.vllm")

# vLLM's allowed max_lora_rank values (vllm/config/lora.py MaxLoRARanks; older releases stop at 256)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
TOP_LOGPROBS = 20          # vLLM's default max_logprobs: top-k read at the judge position
SEQS_PER_CALL = 8192       # sequences per generate call and replica (bounds host memory for logprobs)
PROBE_PROMPTS = 4          # prompts in the sleep/wake check
PROBE_TOKENS = 32
PROBE_LOGPROB_TOL = 1e-3   # per-sequence |delta log-prob| allowed between the two probe runs


class SleepWakeMismatch(RuntimeError):
    """The engine answered differently after waking up: its weights or adapter state are corrupt."""


# ---------------------------------------------------------------------------------------------
# pure pieces (tested on CPU in tests/test_vllm_unit.py)

def lora_rank_cap(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of this rank."""
    for cap in LORA_RANKS:
        if rank <= cap:
            return cap
    raise UsageError(f"lora.rank = {rank}: vLLM serves LoRA ranks up to {LORA_RANKS[-1]}")


def prompt_seeds(seed: int, count: int, n: int) -> list[int]:
    """One seed per prompt, from (seed, prompt index) only. vLLM seeds the n samples of a prompt with
    seed + j (vllm/v1/engine/parallel_sampling.py), so seeds are spaced n apart from a hashed start."""
    seeds = []
    for i in range(count):
        digest = hashlib.blake2b(struct.pack("<QQ", seed % 2**64, i), digest_size=8).digest()
        seeds.append(int.from_bytes(digest, "little") % (2**62 - n))
    return seeds


def even_slices(count: int, parts: int) -> list[slice]:
    """count items cut into `parts` contiguous slices whose sizes differ by at most one."""
    base, extra = divmod(count, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + base + (k < extra)
        out.append(slice(start, stop))
        start = stop
    return out


def replica_gpu_groups(visible: Sequence[str], replicas: int, per_replica: int) -> list[list[str]]:
    """The GPUs (CUDA_VISIBLE_DEVICES entries) of each data-parallel replica."""
    need = replicas * per_replica
    if len(visible) < need:
        raise UsageError(f"model.data_parallel_size = {replicas} x {per_replica} GPU(s) per replica "
                         f"needs {need} GPUs; {len(visible)} visible")
    return [list(visible[r * per_replica:(r + 1) * per_replica]) for r in range(replicas)]


@dataclass(frozen=True)
class LoRARef:
    """One served adapter: what vLLM's LoRARequest(lora_name, lora_int_id, lora_path) is built from."""
    name: str
    id: int
    path: str

    def spec(self) -> tuple[str, int, str]:
        return (self.name, self.id, self.path)


class LoRABook:
    """Hands out adapters that were never served before: a new name, a new int id and a new folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.next_id = 1  # vLLM treats id 0 as "no adapter"

    def issue(self) -> LoRARef:
        lora_id = self.next_id
        self.next_id += 1
        path = self.root / f"adapter-{lora_id:05d}"
        if path.exists():
            raise RuntimeError(f"{path} exists: adapter folders are never reused")
        return LoRARef(f"silab-{lora_id}", lora_id, str(path))

    def retire(self, ref: LoRARef | None) -> None:
        """Delete a folder vLLM no longer needs (it keeps loaded adapters by id)."""
        if ref is not None and Path(ref.path).parent == self.root:
            shutil.rmtree(ref.path, ignore_errors=True)


def _value(entry) -> float:
    """A vLLM Logprob (has .logprob) or a bare float."""
    return float(getattr(entry, "logprob", entry))


def completion_tokens_logprob(completion) -> tuple[list[int], float]:
    """(generated token ids, sum of their raw log-probs) from a vLLM CompletionOutput."""
    tokens = [int(t) for t in completion.token_ids]
    logprob = completion.cumulative_logprob
    if logprob is None:
        if completion.logprobs is None:
            raise RuntimeError("vLLM returned no log-probs for a sample (SamplingParams.logprobs unset?)")
        logprob = sum(_value(position[t]) for position, t in zip(completion.logprobs, tokens))
    return tokens, float(logprob)


def position_logprobs(position: Mapping | None) -> dict[int, float]:
    """{token id: log-prob} at one position (vLLM's dict[int, Logprob])."""
    if position is None:
        return {}
    return {int(t): _value(lp) for t, lp in position.items()}


# what each kind of request brings back from the engine, as plain data (it may cross processes)
EXTRACT: dict[str, Callable[[Any], Any]] = {
    "sample": lambda out: [completion_tokens_logprob(c) for c in out.outputs],
    "greedy": lambda out: [int(t) for t in out.outputs[0].token_ids],
    "top": lambda out: position_logprobs(out.outputs[0].logprobs[0]),
    "prompt_last": lambda out: position_logprobs(out.prompt_logprobs[-1]),
}


def probs_from_top(tops: Sequence[Mapping[int, float]], cols: Sequence[int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """P(col | text) for each row's top-k log-probs; (row, column) pairs missing from the top k are
    returned for an exact second look and left as NaN."""
    probs = np.full((len(tops), len(cols)), np.nan)
    missing = []
    for r, top in enumerate(tops):
        for c, tid in enumerate(cols):
            if tid in top:
                probs[r, c] = math.exp(top[tid])
            else:
                missing.append((r, c))
    return probs, missing


def strip_stop(tokens: Sequence[int], stop_ids: set[int]) -> list[int]:
    """The tokens a sample's text is decoded from: without the end-of-sequence token it stopped on."""
    tokens = list(tokens)
    return tokens[:-1] if tokens and tokens[-1] in stop_ids else tokens


def to_samples(rows: Sequence[Sequence[tuple[list[int], float]]], tokenizer, stop_ids: set[int]) -> list[list[Sample]]:
    """Engine results (per prompt: n (tokens, log-prob)) as Samples, with hf.py's conventions: tokens
    keep the end-of-sequence token, n_tokens = len(tokens), text is decoded without special tokens."""
    flat = [pair for row in rows for pair in row]
    texts = tokenizer.batch_decode([strip_stop(t, stop_ids) for t, _ in flat], skip_special_tokens=True) if flat else []
    samples, k = [], 0
    for row in rows:
        samples.append([Sample(texts[k + j], list(t), lp) for j, (t, lp) in enumerate(row)])
        k += len(row)
    return samples


def probe_mismatches(before: Sequence, after: Sequence, tol: float = PROBE_LOGPROB_TOL) -> list[int]:
    """Indices of probe prompts whose greedy (tokens, log-prob) differ between two runs."""
    bad = []
    for i, ((t0, lp0), (t1, lp1)) in enumerate(zip(before, after)):
        if list(t0) != list(t1) or abs(lp0 - lp1) > tol:
            bad.append(i)
    if len(before) != len(after):
        bad.append(min(len(before), len(after)))
    return bad


def engine_kwargs(profile: Profile, model_path: str, model_max_len: int | None = None,
                  env: Mapping[str, str] = os.environ) -> dict:
    """Arguments of vllm.LLM for this profile (one replica)."""
    m = profile.model
    if m.dtype == "float32":
        # vLLM's LoRA kernels take float16 / bfloat16 only (vllm-project/vllm#10348, #14827)
        raise UsageError("model.dtype = float32: vLLM serves LoRA adapters in bfloat16 or float16 only; "
                         "set model.dtype = bfloat16 (e.g. --set model.dtype=bfloat16)")
    max_len = m.max_model_len if not model_max_len else min(m.max_model_len, model_max_len)
    kwargs = dict(
        model=model_path, dtype=m.dtype, seed=profile.seed, trust_remote_code=m.trust_remote_code,
        gpu_memory_utilization=m.gpu_memory_utilization, max_model_len=max_len,
        tensor_parallel_size=m.tensor_parallel_size,
        enable_lora=True, max_lora_rank=lora_rank_cap(profile.lora.rank), max_loras=1,
        enable_sleep_mode=True, enable_prefix_caching=True,
        logprobs_mode="raw_logprobs", max_logprobs=TOP_LOGPROBS,
        # prompts are token ids and texts are decoded here, exactly as on the hf backend
        skip_tokenizer_init=True,
        # stop tokens come from the request (hf.py stops on the tokenizer's eos only)
        generation_config="vllm",
    )
    pipeline = getattr(m, "pipeline_parallel_size", 1)
    if pipeline > 1:
        kwargs["pipeline_parallel_size"] = pipeline
    executor = getattr(m, "distributed_executor_backend", "") or env.get("SILAB_VLLM_EXECUTOR", "")
    if executor:
        kwargs["distributed_executor_backend"] = executor
    extra = env.get("SILAB_VLLM_ENGINE_ARGS", "")
    if extra:
        try:
            kwargs.update(json.loads(extra))
        except (json.JSONDecodeError, TypeError) as e:
            raise UsageError(f"SILAB_VLLM_ENGINE_ARGS: not a JSON object: {e}") from None
    return kwargs


# ---------------------------------------------------------------------------------------------
# the engine: one vllm.LLM (in this process or in a replica process)

_DEVNULL = None


def _progress_bar(report: Callable[[int], None]):
    """A tqdm class for LLM.generate(use_tqdm=...) that reports finished requests and prints nothing.
    vLLM calls it for "Adding requests" (as an iterator) and "Processed prompts" (update per
    finished request), and reads .format_dict / .n / .postfix: a real tqdm keeps all of those."""
    global _DEVNULL
    from tqdm.std import tqdm

    if _DEVNULL is None:
        _DEVNULL = open(os.devnull, "w")

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=_DEVNULL, mininterval=3600.0)
            super().__init__(*args, **kwargs)
            self._counts = str(kwargs.get("desc", "")).startswith("Processed")
            self._finished = 0

        def update(self, n=1):
            result = super().update(n)
            if self._counts:
                self._finished += 1
                report(self._finished)
            return result

    return Bar


def _sampling_params(params: dict):
    from vllm import SamplingParams
    return SamplingParams(**params)


class LocalEngine:
    """One vllm.LLM in this process; built in the main thread (vLLM installs signal handlers)."""

    def __init__(self, kwargs: dict):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the vLLM engine must be built in the main thread (vLLM installs signal "
                               "handlers there); run the round loop in the main thread")
        # the trainer may have initialised CUDA in this process: vLLM's workers must not fork it
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        from vllm import LLM

        self.kwargs = kwargs
        self.llm = LLM(**kwargs)
        self._loras: dict[int, Any] = {}
        self.replicas = 1

    def _lora(self, spec):
        if spec is None:
            return None
        from vllm.lora.request import LoRARequest
        name, lora_id, path = spec
        if lora_id not in self._loras:
            self._loras[lora_id] = LoRARequest(name, lora_id, path)
        return self._loras[lora_id]

    def run(self, kind: str, prompts: list[list[int]], params: list[dict], lora, progress: Callable[[int], None]) -> list:
        if not prompts:
            return []
        requests = [{"prompt_token_ids": ids} for ids in prompts]
        outputs = self.llm.generate(requests, sampling_params=[_sampling_params(p) for p in params],
                                    use_tqdm=_progress_bar(progress), lora_request=self._lora(lora))
        return [EXTRACT[kind](out) for out in outputs]

    def probe(self, kind: str, prompts, params, lora) -> list[list]:
        """The same requests on every replica, from an empty prefix cache (so both probe runs take
        the same path through the kernels)."""
        with contextlib.suppress(AttributeError):
            self.llm.reset_prefix_cache()
        return [self.run(kind, prompts, params, lora, lambda k: None)]

    def sleep(self) -> None:
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        for target in (engine, getattr(engine, "engine_core", None)):
            shutdown = getattr(target, "shutdown", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()
                break
        del llm, engine
        gc.collect()
        with contextlib.suppress(Exception):
            from vllm.distributed import cleanup_dist_env_and_memory
            cleanup_dist_env_and_memory(shutdown_ray=self.kwargs.get("distributed_executor_backend") == "ray")


def _replica_main(conn, kwargs: dict) -> None:
    """A data-parallel replica process: one LocalEngine, built in this process's main thread."""
    try:
        engine = LocalEngine(kwargs)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            cmd, args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            if cmd == "run":
                last = [0.0]

                def report(k):
                    now = time.monotonic()
                    if now - last[0] > 0.2:
                        last[0] = now
                        conn.send(("progress", k))

                result = engine.run(*args, progress=report)
            elif cmd == "probe":
                result = engine.probe(*args)[0]
            elif cmd in ("sleep", "wake_up"):
                result = getattr(engine, cmd)()
            elif cmd == "close":
                engine.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


class ReplicaPool:
    """R independent engines (data parallel), one process each, requests split evenly between them.
    Seeds are per prompt, so the results equal those of one engine."""

    def __init__(self, kwargs: dict, groups: list[list[str]]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.replicas = len(groups)
        self.procs, self.conns = [], []
        try:
            for group in groups:
                parent, child = ctx.Pipe()
                with _environ(CUDA_VISIBLE_DEVICES=",".join(group)):
                    # not a daemon: vLLM starts its own engine process inside
                    proc = ctx.Process(target=_replica_main, args=(child, kwargs), daemon=False)
                    proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
            for r in range(self.replicas):
                kind, payload = self._recv(r)
                if kind != "ready":
                    raise RuntimeError(f"vLLM replica {r} (GPUs {','.join(groups[r])}) failed to start:\n{payload}")
        except BaseException:
            self.close()
            raise

    def _recv(self, r: int):
        conn, proc = self.conns[r], self.procs[r]
        while not conn.poll(1.0):
            if not proc.is_alive():
                raise RuntimeError(f"vLLM replica {r} exited (code {proc.exitcode})")
        return conn.recv()

    def _gather(self, active: list[int], progress: Callable[[int, int], None] | None = None) -> dict[int, Any]:
        from multiprocessing.connection import wait

        results: dict[int, Any] = {}
        while len(results) < len(active):
            waiting = [r for r in active if r not in results]
            ready = wait([self.conns[r] for r in waiting], timeout=1.0)
            for r in waiting:
                conn = self.conns[r]
                if conn not in ready:
                    if not self.procs[r].is_alive():
                        raise RuntimeError(f"vLLM replica {r} exited (code {self.procs[r].exitcode})")
                    continue
                kind, payload = conn.recv()
                if kind == "progress" and progress:
                    progress(r, payload)
                elif kind == "ok":
                    results[r] = payload
                elif kind == "error":
                    raise RuntimeError(f"vLLM replica {r} failed:\n{payload}")
        return results

    def run(self, kind: str, prompts, params, lora, progress: Callable[[int], None]) -> list:
        parts = even_slices(len(prompts), self.replicas)
        active = [r for r, s in enumerate(parts) if s.stop > s.start]
        for r in active:
            self.conns[r].send(("run", (kind, prompts[parts[r]], params[parts[r]], lora)))
        done = [0] * self.replicas

        def report(r, k):
            done[r] = k
            progress(sum(done))

        results = self._gather(active, report)
        return [item for r in active for item in results[r]]

    def probe(self, kind, prompts, params, lora) -> list[list]:
        for conn in self.conns:
            conn.send(("probe", (kind, prompts, params, lora)))
        results = self._gather(list(range(self.replicas)))
        return [results[r] for r in range(self.replicas)]

    def _broadcast(self, cmd: str) -> None:
        for conn in self.conns:
            conn.send((cmd, None))
        self._gather(list(range(self.replicas)))

    def sleep(self) -> None:
        self._broadcast("sleep")

    def wake_up(self) -> None:
        self._broadcast("wake_up")

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            with contextlib.suppress(Exception):
                if proc.is_alive():
                    conn.send(("close", None))
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []


# ---------------------------------------------------------------------------------------------
# the backend

class VLLMBackend:
    def __init__(self, profile: Profile, model_path: str):
        if importlib.util.find_spec("vllm") is None:
            raise UsageError("model.backend = \"vllm\" needs the vllm package and a CUDA GPU: "
                             "pip install -e '.[gpu]' (or use model.backend = \"hf\")")
        from transformers import AutoConfig, AutoTokenizer

        m = profile.model
        self.p, self.model_path = profile, model_path
        self.tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=m.trust_remote_code)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.stop_ids = {self.tok.eos_token_id}
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=m.trust_remote_code)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.vocab_size = int(getattr(text_config, "vocab_size", 0) or len(self.tok))
        self.top_k = min(TOP_LOGPROBS, self.vocab_size)
        self.kwargs = engine_kwargs(profile, model_path, getattr(text_config, "max_position_embeddings", None))
        if self.kwargs["max_model_len"] < m.max_model_len:
            log.info("max_model_len capped at the model's %d positions", self.kwargs["max_model_len"])
        self.replicas = m.data_parallel_size
        if self.replicas > 1 and self.kwargs.get("distributed_executor_backend") == "ray":
            raise UsageError("model.data_parallel_size > 1 starts local replicas; with the Ray executor "
                             "use tensor_parallel_size / pipeline_parallel_size instead")
        root = os.environ.get("SILAB_VLLM_ADAPTER_DIR") or None  # multi-node: a folder every node sees
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.book = LoRABook(Path(tempfile.mkdtemp(prefix="silab-vllm-", dir=root)))
        self.engine: LocalEngine | ReplicaPool | None = None
        self.engine_builds = 0
        self.lora: LoRARef | None = None       # the adapter vLLM serves; None = the base model (pi_0)
        self.trainer = None                    # an HFBackend, built the first time we train
        self.trainer_resident: bool | None = None
        self.check_wake = os.environ.get("SILAB_VLLM_WAKE_CHECK", "1") != "0"
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
        return [list(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def _run(self, kind: str, prompts: list[list[int]], params: list[dict], progress: Progress,
             per_prompt: int = 1) -> list:
        engine = self._engine()
        lora = self.lora.spec() if self.lora else None
        total, out = len(prompts), []
        size = max(1, SEQS_PER_CALL * engine.replicas // max(1, per_prompt))
        for start in range(0, total, size):
            stop = min(total, start + size)
            out.extend(engine.run(kind, prompts[start:stop], params[start:stop], lora,
                                  lambda k, start=start: progress(min(start + k, total), total)))
            progress(stop, total)
        return out

    def _stop(self) -> list[int]:
        return sorted(self.stop_ids)

    # --- generation -----------------------------------------------------------------------------
    def sample(self, prompts: list[str], n: int, seed: int, progress: Progress) -> list[list[Sample]]:
        s = self.p.sampling
        ids = self._encode(prompts)
        if not self.probe_ids:
            self.probe_ids = ids[:PROBE_PROMPTS]
        params = [dict(n=n, temperature=s.temperature, top_p=s.top_p, max_tokens=self.p.model.max_new_tokens,
                       seed=sd, logprobs=1, stop_token_ids=self._stop(), detokenize=False)
                  for sd in prompt_seeds(seed, len(ids), n)]
        rows = self._run("sample", ids, params, progress, per_prompt=n)
        return to_samples(rows, self.tok, self.stop_ids)

    def greedy(self, prompts: list[str], progress: Progress) -> list[str]:
        ids = self._encode(prompts)
        params = [dict(n=1, temperature=0.0, max_tokens=self.p.model.max_new_tokens,
                       stop_token_ids=self._stop(), detokenize=False)] * len(ids)
        tokens = self._run("greedy", ids, params, progress)
        return self.tok.batch_decode([strip_stop(t, self.stop_ids) for t in tokens], skip_special_tokens=True) \
            if tokens else []

    # --- judging --------------------------------------------------------------------------------
    def next_token_probs(self, texts: list[str], tokens: list[str], progress: Progress) -> np.ndarray:
        from silab.engine.hf import first_token_id

        cols = [first_token_id(self.tok, t) for t in tokens]
        ids = self._encode(texts)
        params = [dict(n=1, temperature=0.0, max_tokens=1, logprobs=self.top_k, detokenize=False)] * len(ids)
        probs, missing = probs_from_top(self._run("top", ids, params, progress), cols)
        if missing:  # outside the top k: read the exact value as the prompt log-prob of that token
            extra = [ids[r] + [cols[c]] for r, c in missing]
            params = [dict(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)] * len(extra)
            for (r, c), last in zip(missing, self._run("prompt_last", extra, params, lambda d, t: None)):
                probs[r, c] = math.exp(last[cols[c]])
        return probs

    # --- the sleep / wake check ------------------------------------------------------------------
    def _probe(self) -> list[list]:
        params = [dict(n=1, temperature=0.0, seed=0, logprobs=1, detokenize=False, stop_token_ids=self._stop(),
                       max_tokens=min(PROBE_TOKENS, self.p.model.max_new_tokens))] * len(self.probe_ids)
        return self.engine.probe("sample", self.probe_ids, params, self.lora.spec() if self.lora else None)

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
            from silab.engine.hf import HFBackend

            self.trainer = HFBackend(self.p, self.model_path)  # seeded LoRA init, as on the hf backend
            self.trainer.load_adapter(Path(self.lora.path) if self.lora else None)
        elif next(self.trainer.model.parameters()).device.type != self.trainer.device.type:
            self.trainer.model.to(self.trainer.device)
        if self.trainer_resident is None:
            self.trainer_resident = self._fits_beside_vllm(torch)
            log.info("trainer weights %s between rounds", "stay on the GPU" if self.trainer_resident
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

    def train(self, pairs: list[tuple[str, str]], lr: float, seed: int, progress: Progress) -> dict:
        timing: dict[str, float] = {}
        clock = time.perf_counter

        def lap(name: str, since: float) -> None:
            timing[name] = round(timing.get(name, 0.0) + clock() - since, 3)

        start = clock()
        engine, before = self.engine, None    # no engine yet (a resumed run trains first): no sleep
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
            stats = trainer.train(pairs, lr, seed, progress)
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
        return {**stats, "vllm": {**timing, "lora_id": ref.id, "trainer_resident": bool(self.trainer_resident)}}

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
