"""Checking speed: MATH answer checks per second over a realistic mix of responses, and what a
paper-shaped round (1,000 prompts x 16 samples = 16,000 checks) spends on checking.

The mix is synthetic but shaped like MATH: mostly integers, then fractions, radicals, multiples of
pi, solution lists, unions of intervals, letter choices, matrices and polynomials; each response
states its answer in one of several equivalent forms (or a wrong one, or none at all), and the 16
samples of a prompt repeat answers the way a model does (a favourite right form, a few favourite
wrong answers). Three figures, in one run on the same checks:
  uncached  every check decided afresh (`decide`), on the first --uncached checks of the round
  round     all checks of the round through `MathTask.is_correct`, with the (answer, gold) cache
  cheap     the share decided without sympy (exact numbers, normalised strings, conflicts)

    python bench/bench_check.py [--prompts 1000] [--samples 16] [--uncached 2000] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
import time
from importlib.metadata import version

from silab.tasks import get_task, sympy_check
from silab.tasks import math_task

# category: share, gold, right forms (the first is the favourite), wrong answers
MIX = [
    ("integer", 0.50, "{a}", ["{a}", "{a}.", "x = {a}", "{a}\\text{{ units}}"], ["{b}", "{c}", "-{a}"]),
    ("fraction", 0.12, "\\frac{{{a}}}{{{d}}}", ["\\frac{{{a}}}{{{d}}}", "\\dfrac{{{a}}}{{{d}}}", "{a}/{d}", "{a2}/{d2}"],
     ["\\frac{{{d}}}{{{a}}}", "\\frac{{{b}}}{{{d}}}"]),
    ("radical", 0.10, "{a}\\sqrt{{{p}}}", ["{a}\\sqrt{{{p}}}", "\\sqrt{{{sq}}}", "{a} \\sqrt {p}"],
     ["{p}\\sqrt{{{a}}}", "\\sqrt{{{a}{p}}}"]),
    ("pi", 0.05, "\\frac{{{a}\\pi}}{{{d}}}", ["\\frac{{{a}\\pi}}{{{d}}}", "\\frac{{{a}}}{{{d}}}\\pi"], ["\\frac{{\\pi}}{{{d}}}"]),
    ("list", 0.07, "-{a}, {b}", ["-{a}, {b}", "{b}, -{a}", "x=-{a} \\text{{ or }} x={b}"], ["-{a}", "{a}, {b}"]),
    ("interval", 0.05, "(-\\infty, {a}] \\cup ({c}, \\infty)", ["({c}, \\infty) \\cup (-\\infty, {a}]",
     "(-\\infty,{a}]\\cup({c},\\infty)"], ["(-\\infty, {a}) \\cup ({c}, \\infty)"]),
    ("choice", 0.05, "\\text{{(C)}}", ["C", "\\text{{(C)}}", "(C)"], ["B", "\\text{{(D)}}"]),
    ("matrix", 0.03, "\\begin{{pmatrix}} {a} \\\\ -{b} \\end{{pmatrix}}",
     ["\\begin{{pmatrix}}{a}\\\\-{b}\\end{{pmatrix}}", "\\begin{{pmatrix}} {a}.0 \\\\ -{b} \\end{{pmatrix}}"],
     ["\\begin{{pmatrix}} -{b} \\\\ {a} \\end{{pmatrix}}"]),
    ("polynomial", 0.03, "x^2+{s}x+{q}", ["x^2+{s}x+{q}", "(x+{a})(x+{b})", "{q}+{s}x+x^2"], ["x^2+{q}x+{s}"]),
]


def _prompt(rng: random.Random):
    """(gold, right forms, wrong forms) for one prompt."""
    cat = rng.choices(MIX, weights=[m[1] for m in MIX])[0]
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    while b == a:
        b = rng.randint(2, 40)
    d = rng.choice([p for p in (3, 5, 7, 11, 13) if a % p])
    p = rng.choice([2, 3, 5, 7])
    v = dict(a=a, b=b, c=a + b, d=d, a2=2 * a, d2=2 * d, p=p, sq=a * a * p, s=a + b, q=a * b)
    fill = [f.format(**v) for f in cat[3]], [f.format(**v) for f in cat[4]]
    return cat[2].format(**v), *fill


def _response(rng: random.Random, answer: str | None) -> str:
    steps = "We expand, collect terms and simplify step by step. " * rng.randint(2, 8)
    if answer is None:
        return steps + "Therefore the value is"  # ran out of tokens
    if rng.random() < 0.1:
        return steps + f"The final answer is ${answer}$. I hope it is correct."
    return steps + f"So the answer is $\\boxed{{{answer}}}$."


def build_round(n_prompts: int, n_samples: int, seed: int) -> list[tuple[str, str, bool]]:
    """(response, gold, meant to be right) for every sample of a round."""
    rng = random.Random(seed)
    checks = []
    for _ in range(n_prompts):
        gold, right, wrong = _prompt(rng)
        p_right = rng.betavariate(1.2, 1.8)  # mean 0.4: the paper's Phi-4-mini starts at 30-45 %
        for _ in range(n_samples):
            r = rng.random()
            meant = 0.05 <= r < 0.05 + 0.95 * p_right
            if r < 0.05:
                answer = None
            elif meant:
                answer = right[0] if rng.random() < 0.7 else rng.choice(right)
            else:
                answer = wrong[0] if rng.random() < 0.6 else rng.choice(wrong)
            checks.append((_response(rng, answer), gold, meant))
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--uncached", type=int, default=2000, help="checks timed without the cache")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    task = get_task("math")
    checks = build_round(args.prompts, args.samples, args.seed)
    print(f"math-verify {version('math-verify')}, latex2sympy2_extended {version('latex2sympy2_extended')}, "
          f"sympy {version('sympy')}; limit {sympy_check.TIME_LIMIT_S} s per comparison; seed {args.seed}")

    start = time.perf_counter()
    sympy_check.equivalent("\\sqrt{4}", "2")
    print(f"worker start (once per process): {time.perf_counter() - start:.2f} s")

    sample = [(task.extract_answer(text), gold) for text, gold, _ in checks[:args.uncached]]
    calls = sympy_check.STATS.sympy_calls
    start = time.perf_counter()
    for pred, gold in sample:
        if pred is not None:
            math_task.decide(pred, gold)
    uncached_s = time.perf_counter() - start
    to_sympy = sympy_check.STATS.sympy_calls - calls
    print(f"uncached: {len(sample)} checks in {uncached_s:.2f} s = {len(sample) / uncached_s:,.0f} checks/s; "
          f"{1 - to_sympy / len(sample):.0%} decided without sympy")

    math_task._CACHE.clear()
    before = sympy_check.CheckStats(**vars(sympy_check.STATS))
    start = time.perf_counter()
    verdicts = [task.is_correct(text, gold) for text, gold, _ in checks]
    round_s = time.perf_counter() - start
    right = sum(verdicts)
    disagree = sum(v != meant for v, (_, _, meant) in zip(verdicts, checks))
    hits = sympy_check.STATS.cache_hits - before.cache_hits
    timeouts = sympy_check.STATS.timeouts - before.timeouts
    n = len(checks)
    projected = n * uncached_s / len(sample)
    print(f"round ({args.prompts} prompts x {args.samples}): {n:,} checks in {round_s:.1f} s = "
          f"{n / round_s:,.0f} checks/s with the cache ({hits / n:.0%} hits; {projected:.0f} s projected "
          f"without it, x{projected / round_s:.1f}); {right / n:.1%} judged right, {disagree} against the intended verdict; {timeouts} timeouts")
    # a phi3_math round's sampling, assumed (not measured here, no GPU): 16,000 samples x ~350 new
    # tokens at 10k-20k tokens/s (vLLM, Phi-3-mini bf16, one H100-class GPU) = 280-560 s
    gen_lo, gen_hi = n * 350 / 20_000, n * 350 / 10_000
    print(f"share of a phi3_math round's sampling (assumed {gen_lo:.0f}-{gen_hi:.0f} s): "
          f"{round_s / (gen_hi + round_s):.1%}-{round_s / (gen_lo + round_s):.1%} with the cache, "
          f"{projected / (gen_hi + projected):.1%}-{projected / (gen_lo + projected):.1%} without")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
