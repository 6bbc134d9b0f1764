"""The organism's task: two-digit addition, with a solver that forgets carries.

The task is small enough to learn on a laptop CPU in a couple of minutes and rich enough to show the
mechanism of the paper: the organism is pretrained on *noisy* solutions in which a carry is often
forgotten (47+38 -> 75), so its most likely answer to a carry problem is wrong, but on *clean*
judgements, so its judge knows better. Likelihood-only Best-of-N then reinforces the error; judged
Best-of-N fixes it.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from silab.config import TaskConfig
from silab.tasks.base import Item

LO, HI = 10, 99  # operands are two-digit numbers


@dataclass(frozen=True)
class SolverNoise:
    """How the organism's pretraining corpus answers: the solver's systematic and random errors."""
    forget_carry: float = 0.55  # carry problems: the carry into the tens is dropped
    slip: float = 0.12          # any problem: one digit of the answer replaced at random


def has_carry(a: int, b: int) -> bool:
    return a % 10 + b % 10 >= 10


def noisy_answer(a: int, b: int, rng: random.Random, noise: SolverNoise) -> int:
    """One answer from the pretraining corpus: right, carry forgotten, or a slipped digit."""
    u = rng.random()
    if has_carry(a, b) and u < noise.forget_carry:
        return a + b - 10
    if u > 1 - noise.slip:
        return slip_digit(a + b, rng)
    return a + b


def slip_digit(n: int, rng: random.Random) -> int:
    digits = list(str(n))
    i = rng.randrange(len(digits))
    digits[i] = rng.choice([d for d in "0123456789" if d != digits[i] and (i > 0 or d != "0")])
    return int("".join(digits))


def is_test_pair(a: int, b: int) -> bool:
    """A fixed fifth of all problems is held out for testing, whatever the seed (and the carry)."""
    return random.Random(f"{a}+{b}").random() < 0.2


class ArithTask:
    """Questions "47+38"; the response is the number alone ("85"), then end of sequence."""
    name = "arith"

    def extract_answer(self, text: str) -> str | None:
        m = re.match(r"\s*(-?\d+)", text)
        return m.group(1).lstrip("0") or "0" if m else None

    def is_correct(self, text: str, gold: str) -> bool:
        return self.extract_answer(text) == gold

    def load(self, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
        test = split == "test"
        pairs = [(a, b) for a in range(LO, HI + 1) for b in range(LO, HI + 1) if is_test_pair(a, b) == test]
        random.Random(12345).shuffle(pairs)  # a fixed order; the engine draws its own subsets by seed
        items = [Item(id=f"{a}+{b}", question=f"{a}+{b}", gold=str(a + b), solution=str(a + b))
                 for a, b in pairs]
        return items, 0
