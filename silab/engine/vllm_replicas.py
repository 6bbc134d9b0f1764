"""Data-parallel vLLM: R engine replicas, one process each with its own GPUs (model.data_parallel_size).

Each replica process holds one LocalEngine (silab/engine/vllm_engine.py) and answers commands sent
over a pipe; requests are split evenly between replicas. Seeds are per prompt, so R replicas give
the results of one engine.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from typing import Any, Callable, Sequence
from unittest import mock

from silab.engine.vllm_engine import LocalEngine
from silab.errors import UsageError


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
                with mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": ",".join(group)}):
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
