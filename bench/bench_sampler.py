"""CPU benchmark: the hf backend's `sample` against a bare batched `model.generate` of the same work.

Same model object (the tiny organism with its LoRA adapter), same prompts, same N
(num_return_sequences), same max_new_tokens, same batch size and sampling settings. The bare call
only generates; `sample` also keeps the raw logits, computes each sample's log-prob and decodes the
texts. Target: sample's throughput >= 0.9 x the bare call's, judged on the best of interleaved runs in CPU
time (this process's), printed beside wall time.

    python bench/bench_sampler.py [--prompts 256] [--n 16] [--repeats 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from silab.config import load_profile
from silab.engine.backends.hf import HFBackend
from silab.engine.organism import ensure_organism
from silab.tasks import format_prompt, get_task, split_items


def bare_generate(backend: HFBackend, prompts: list[str], n: int) -> int:
    """The same batches through model.generate, returning only the token ids."""
    p, done = backend.p, 0
    with torch.no_grad():
        for start in range(0, len(prompts), p.sampling.batch_size):
            ids, mask = backend._encode_left(prompts[start:start + p.sampling.batch_size])
            out = backend.model.generate(
                input_ids=ids, attention_mask=mask, num_return_sequences=n,
                max_new_tokens=p.model.max_new_tokens, pad_token_id=backend.tok.pad_token_id,
                eos_token_id=backend.tok.eos_token_id, do_sample=True, temperature=p.sampling.temperature,
                top_p=p.sampling.top_p, top_k=0)
            done += out.shape[0]
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile, ["model.device=cpu"])
    backend = HFBackend(profile, str(ensure_organism(profile.model.organism, profile.model.cache_dir)))
    splits = split_items(get_task(profile.task.name), profile.task, profile.seed)
    prompts = [format_prompt(profile.task, item, backend.tok) for item in splits.prompts][:args.prompts]
    sequences = len(prompts) * args.n

    def timed(fn) -> tuple[float, float]:
        """(wall seconds, this process's CPU seconds): CPU time is what other processes on a
        shared machine disturb least."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    noop = lambda done, total: None  # noqa: E731
    timed(lambda: backend.sample(prompts[:64], args.n, 0, noop))   # warm-up
    timed(lambda: bare_generate(backend, prompts[:64], args.n))
    hf_times, bare_times = [], []
    for r in range(args.repeats):  # interleaved, so drift in a shared machine hits both alike
        torch.manual_seed(r)
        bare_times.append(timed(lambda: bare_generate(backend, prompts, args.n)))
        hf_times.append(timed(lambda: backend.sample(prompts, args.n, r, noop)))
    # best-of: the figure that noise from other processes on a shared machine inflates least
    rates = {}
    for clock in (0, 1):
        hf_best, bare_best = min(t[clock] for t in hf_times), min(t[clock] for t in bare_times)
        rates[clock] = (sequences / bare_best, sequences / hf_best, bare_best / hf_best)
    print(f"work: {len(prompts)} prompts x N={args.n} = {sequences} sequences, max_new_tokens="
          f"{profile.model.max_new_tokens}, batch {profile.sampling.batch_size} prompts, "
          f"{args.threads} thread(s), best of {args.repeats} interleaved runs")
    for clock, name in ((0, "wall"), (1, "cpu ")):
        bare_rate, hf_rate, r = rates[clock]
        runs = lambda ts: ", ".join(f"{t[clock]:.2f}" for t in ts)  # noqa: E731
        print(f"[{name}] bare model.generate : {bare_rate:8.1f} sequences/s  (runs, s: {runs(bare_times)})")
        print(f"[{name}] hf backend sample   : {hf_rate:8.1f} sequences/s  (runs, s: {runs(hf_times)})")
        print(f"[{name}] ratio sample / bare : {r:.3f}")
    ratio = rates[1][2]
    print(f"target: sample >= 0.9 x bare (judged on CPU time): {'met' if ratio >= 0.9 else 'NOT met'} ({ratio:.3f})")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
