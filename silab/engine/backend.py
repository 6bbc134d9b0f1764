"""What the round loop needs from a model runtime.

Plain strings and numbers cross this boundary, and adapters cross it as folders on disk, so a
backend can live in another process (vLLM serving, peft training) without the loop noticing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from silab.engine.tokens import cut_at_stop, decode_responses

Progress = Callable[[int, int], None]  # (done, total)
Example = tuple[list[int], list[int]]   # (prompt ids, target ids): what one training example is


@dataclass
class Sample:
    text: str              # the response, decoded without its stop id and special tokens
    tokens: list[int]      # the sampled ids up to and including the first stop id; nothing after it
    logprob: float         # sum of log pi(token) over `tokens`, raw (temperature-1) distribution
    finished: bool = True  # False: max_new_tokens ran out before a stop id (counted as `truncated`)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def to_samples(rows: Sequence[Sequence[tuple[list[int], list[float]]]], tokenizer,
               stop_ids: Sequence[int]) -> list[list[Sample]]:
    """Generated rows (per prompt: n (tokens, per-token raw log-probs)) as Samples with the backend
    contract: tokens up to and including the first stop id, the log-prob summed over those tokens,
    text decoded without the stop id, `finished` False when no stop id came. Both backends use it."""
    cut = [[cut_at_stop(tokens, stop_ids) for tokens, _ in row] for row in rows]
    texts = iter(decode_responses(tokenizer, [kept for row in cut for kept, _ in row], stop_ids))
    return [[Sample(next(texts), kept, float(sum(lps[:len(kept)])), finished)
             for (kept, finished), (_, lps) in zip(row_cut, row)] for row_cut, row in zip(cut, rows)]


class Backend(Protocol):
    tok: object            # the tokenizer: the loop encodes prompts and training targets with it
    stop_ids: list[int]    # where a sample ends (silab.engine.tokens.stop_token_ids)
    end_id: int            # the model's end of turn, closing targets that were not sampled

    def sample(self, prompts: list[str], n: int, seed: int, progress: Progress) -> list[list[Sample]]:
        """n samples per prompt with the profile's temperature / top_p."""

    def greedy(self, prompts: list[str], progress: Progress) -> list[str]: ...

    def next_token_probs(self, texts: list[str], words: list[str], progress: Progress) -> np.ndarray:
        """P(word | text) for each text (rows) and answer word (columns): the full-vocab softmax summed
        over the word's first-token variants (silab.engine.tokens.answer_token_ids)."""

    def train(self, examples: list[Example], lr: float, seed: int, progress: Progress) -> dict:
        """One round of LoRA fine-tuning on token-id examples, continuing the current adapter. With
        train.picks = "refresh": train.epochs epochs (a fraction allowed) of shuffled batches with a
        fresh optimiser. With "fixed": one pass over the examples in the order given (the loop cuts
        them from one continuous stream), continuing the optimiser, whose state travels with the
        adapter folder (save_adapter / load_adapter)."""

    def save_adapter(self, path: Path) -> None: ...

    def load_adapter(self, path: Path) -> None: ...

    def close(self) -> None: ...


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of epoch `epoch` over n examples: the (epoch+1)-th shuffle of one seeded generator,
    so it depends only on (seed, epoch) and a resumed run recomputes where it stopped."""
    rng, order = random.Random(seed), list(range(n))
    for _ in range(epoch + 1):
        order = list(range(n))
        rng.shuffle(order)
    return order


def stream(n: int, seed: int, start: int, count: int) -> list[int]:
    """`count` example indices from position `start` of an endless stream of seeded epochs over n
    examples (epoch e is `epoch_order(n, seed, e)`): one continuous pass, cut into checkpoints."""
    out, pos = [], start
    while len(out) < count:
        epoch, at = divmod(pos, n)
        take = epoch_order(n, seed, epoch)[at:at + count - len(out)]
        out += take
        pos += len(take)
    return out

