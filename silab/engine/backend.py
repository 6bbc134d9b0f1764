"""What the round loop needs from a model runtime.

Plain strings and numbers cross this boundary, and adapters cross it as folders on disk, so a
backend can live in another process (vLLM serving, peft training) without the loop noticing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from silab.config import Profile

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Sample:
    text: str           # the response, decoded without special tokens
    tokens: list[int]   # the generated token ids, end-of-sequence included
    logprob: float      # sum of log pi(token) under the raw (temperature-1) distribution

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


class Backend(Protocol):
    def sample(self, prompts: list[str], n: int, seed: int, progress: Progress) -> list[list[Sample]]:
        """n samples per prompt with the profile's temperature / top_p."""

    def greedy(self, prompts: list[str], progress: Progress) -> list[str]: ...

    def next_token_probs(self, texts: list[str], tokens: list[str], progress: Progress) -> np.ndarray:
        """P(token | text) for each text (rows) and candidate token (columns), full-vocab softmax."""

    def train(self, pairs: list[tuple[str, str]], lr: float, seed: int, progress: Progress) -> dict:
        """One round of LoRA fine-tuning on (prompt, response) pairs, continuing the current adapter."""

    def save_adapter(self, path: Path) -> None: ...

    def load_adapter(self, path: Path) -> None: ...

    def close(self) -> None: ...


def make_backend(profile: Profile, model_path: str) -> Backend:
    if profile.model.backend == "vllm":
        from silab.engine.vllm_backend import VLLMBackend
        return VLLMBackend(profile, model_path)
    from silab.engine.hf import HFBackend
    return HFBackend(profile, model_path)
