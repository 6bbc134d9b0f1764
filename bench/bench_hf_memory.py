"""Memory and time of the hf backend's `sample` against a bare `model.generate` of the same work.

A random-init Llama-3-shaped micro model with a 32,000-token vocabulary samples PROMPTS x N
sequences of NEW tokens (its end of turn made rare, so every sequence runs the full length). Each
measurement runs in a fresh process; memory growth is the peak resident size during the work minus
the size after loading. Also measured: the previous implementation (every step's logits kept and
stacked, `output_logits=True`), to show what the change saves. The sampled log-probs are checked
against a teacher-forced pass.

Targets (issue 10): growth <= 1.25x the bare generate's (or +200 MiB, whichever is more), time <= 1.1x.

    python bench/bench_hf_memory.py [--prompts 4] [--n 16] [--new 256] [--vocab 32000] [--previous]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def child(kind: str, model: str, prompts: int, n: int, new: int) -> dict:
    import torch

    from silab.config import load_profile
    from silab.engine.backends.hf import HFBackend

    torch.set_num_threads(1)  # steadier on a shared machine; both measurements alike
    profile = load_profile("tiny", [f"model.path={model}", "model.device=cpu", f"model.max_new_tokens={new}",
                                    f"sampling.batch_size={prompts}", "sampling.temperature=1.0", "sampling.top_p=1.0"])
    backend = HFBackend(profile, model)
    texts = [f"Question {i}: what is {i} + {i}?" for i in range(prompts)]
    ids, mask = backend._encode_left(texts)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    start = time.perf_counter()
    check = None
    if kind == "sample":
        rows = backend.sample(texts, n, seed=0, progress=lambda d, t: None)
        tokens = sum(s.n_tokens for row in rows for s in row)
        check = max_logprob_error(backend, texts, rows)
    else:
        with torch.no_grad():
            out = backend.model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n, do_sample=True,
                                         top_k=0, max_new_tokens=new, pad_token_id=backend.tok.pad_token_id,
                                         eos_token_id=backend.stop_ids, return_dict_in_generate=True,
                                         output_logits=kind == "stacked")
            if kind == "stacked":  # what the hf backend did before: all steps' logits, one log-softmax
                new_ids = out.sequences[:, ids.shape[1]:]
                lp = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(-1, new_ids.unsqueeze(-1))
                del lp
        tokens = int((out.sequences[:, ids.shape[1]:] != backend.tok.pad_token_id).sum())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "growth_mib": (peak - before) / 1024, "seconds": seconds, "tokens": tokens,
            "max_logprob_error": check}


def max_logprob_error(backend, texts, rows, per_prompt: int = 2) -> float:
    """|sampled log-prob - teacher-forced log-prob| over a few sequences."""
    import torch

    from silab.engine.tokens import encode_prompt

    worst = 0.0
    for text, row in zip(texts[:2], rows):
        prompt = encode_prompt(backend.tok, text)
        for s in row[:per_prompt]:
            with torch.no_grad():
                logits = backend.model(input_ids=torch.tensor([prompt + s.tokens])).logits[0, len(prompt) - 1:-1]
            forced = logits.float().log_softmax(-1).gather(-1, torch.tensor(s.tokens).unsqueeze(-1)).sum().item()
            worst = max(worst, abs(forced - s.logprob))
    return worst


def run(kind: str, model: str, args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", model, "--prompts", str(args.prompts),
                          "--n", str(args.n), "--new", str(args.new)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--previous", action="store_true",
                        help="also measure the previous implementation (holds every step's logits: GBs)")
    parser.add_argument("--child")
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.prompts, args.n, args.new)))
        return

    import platform

    import torch
    import transformers

    from silab.engine.micro import build_micro

    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_micro("llama3", tmp, vocab_size=args.vocab, hidden=256, layers=2, heads=8, end_rate=1e-7))
        print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
              f"random Llama-3-shaped model: vocab {args.vocab}, hidden 256, 2 layers; seed 0")
        print(f"work: {args.prompts} prompts x {args.n} samples x {args.new} new tokens, float32, CPU")
        results = [run(k, model, args) for k in ("bare", "sample") + (("stacked",) if args.previous else ())]
    bare, sample = results[:2]
    for r in results:
        print(f"  {r['kind']:<8} growth {r['growth_mib']:8.0f} MiB   {r['seconds']:6.2f} s   {r['tokens']} tokens")
    limit = max(1.25 * bare["growth_mib"], bare["growth_mib"] + 200)
    print(f"sample / bare: memory growth {sample['growth_mib']:.0f} vs {bare['growth_mib']:.0f} MiB "
          f"(limit {limit:.0f}: {'ok' if sample['growth_mib'] <= limit else 'OVER'}), "
          f"time x{sample['seconds'] / bare['seconds']:.2f} (limit 1.10: "
          f"{'ok' if sample['seconds'] <= 1.1 * bare['seconds'] else 'OVER'})")
    if args.previous:
        stacked = results[2]
        print(f"previous implementation (all logits kept): growth {stacked['growth_mib']:.0f} MiB "
              f"(x{stacked['growth_mib'] / max(sample['growth_mib'], 1):.1f} the new sample's)")
    print(f"log-probs vs a teacher-forced pass: max |error| {sample['max_logprob_error']:.2e} nats")


if __name__ == "__main__":
    main()
