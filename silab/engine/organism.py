"""The model organism: a tiny causal LM that silab builds offline, so the lab runs on a laptop CPU.

It is a real transformers Llama with a real `tokenizers` tokenizer, saved with `save_pretrained` and
loaded back through `from_pretrained`, exactly like a hub model. It is pretrained on two-digit sums
(silab.tasks.arith) with three kinds of text:

    solver   "47+38=75<eos>"     answers from a noisy corpus that often forgets the carry
    judge    "47+38=75?False"    clean true/false verdicts on such answers
    quality  "47+38=75#2"        clean 1-5 quality scores (5 right, 2 carry forgotten, 1 other)

so its solver is imperfect in a systematic way while its judge is clearly better: the solver-verifier
gap that self-improvement feeds on.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from silab.tasks.arith import HI, LO, SolverNoise, has_carry, noisy_answer

SPECIALS = ["[PAD]", "[EOS]", "[UNK]"]
WORDS = ["True", "False"]
CHARS = list("0123456789+=?#")
TF_MARK, QE_MARK = "?", "#"


@dataclass(frozen=True)
class OrganismSpec:
    """Everything that determines the organism; its hash names the cache folder."""
    seed: int = 0
    hidden: int = 96
    layers: int = 3
    heads: int = 3  # head_dim = hidden / heads = 32: vLLM's CPU attention refuses 24 (and 16)
    steps: int = 1200
    batch: int = 384
    lr: float = 3e-3
    mix: tuple[float, float, float] = (0.45, 0.40, 0.15)  # solver, judge, quality
    noise: SolverNoise = field(default_factory=SolverNoise)

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


PRESETS = {
    "tiny": OrganismSpec(),
    # for tests: built in seconds; it barely learns the task, but exercises every code path
    "micro": OrganismSpec(hidden=32, layers=1, heads=1, steps=60, batch=128),
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "silab" / "organisms"


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("True|False|."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]",
                                   unk_token="[UNK]")


def build_model(spec: OrganismSpec, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    ffn = 32 * math.ceil(spec.hidden * 8 / 3 / 32)  # ~8/3 hidden, a multiple of 32 for kernels' sake
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=ffn,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=32, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def corpus_example(rng: random.Random, spec: OrganismSpec) -> tuple[str, str]:
    """One pretraining (context, target) pair; the loss covers the target only."""
    a, b = rng.randint(LO, HI), rng.randint(LO, HI)
    kind = rng.choices(["solver", "judge", "quality"], weights=spec.mix)[0]
    if kind == "solver":
        return f"{a}+{b}=", str(noisy_answer(a, b, rng, spec.noise)) + "[EOS]"
    # judged answers come from the solver's own error distribution, half of them right
    r = a + b if rng.random() < 0.5 else noisy_answer(a, b, rng, SolverNoise(forget_carry=0.7, slip=1.0))
    if kind == "judge":
        return f"{a}+{b}={r}{TF_MARK}", "True" if r == a + b else "False"
    score = 5 if r == a + b else 2 if (has_carry(a, b) and r == a + b - 10) else 1
    return f"{a}+{b}={r}{QE_MARK}", str(score)


def make_batch(tokenizer, pairs: list[tuple[str, str]]):
    """Right-padded ids and labels with -100 outside each target."""
    rows, labels = [], []
    for context, target in pairs:
        c = tokenizer(context, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        rows.append(c + t)
        labels.append([-100] * len(c) + t)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, (ids != pad).long(), lab


def pretrain(model, tokenizer, spec: OrganismSpec, progress: Callable[[int, int, float], None]):
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, spec.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / spec.steps))))
    model.train()
    for step in range(spec.steps):
        ids, mask, labels = make_batch(tokenizer, [corpus_example(rng, spec) for _ in range(spec.batch)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        progress(step + 1, spec.steps, loss.item())
    model.eval()


def save_quietly(path: Path, *parts) -> None:
    """save_pretrained each part (model, tokenizer, config) into path without transformers' own
    "Writing model shards" bar, which would land in the middle of silab's progress lines."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        for part in parts:
            part.save_pretrained(path)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def ensure_organism(preset: str = "tiny", cache_dir: str | Path = "", seed: int = 0,
                    progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Path of the organism's saved model, building it once (atomically) if the cache lacks it."""
    spec = PRESETS[preset]
    spec = OrganismSpec(**{**asdict(spec), "seed": seed, "noise": spec.noise})
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = root / f"{preset}-{spec.key()}"
    if (path / "config.json").is_file():
        return path
    tokenizer = build_tokenizer()
    model = build_model(spec, tokenizer)
    pretrain(model, tokenizer, spec, progress or (lambda *a: None))
    tmp = root / f".{path.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_quietly(tmp, model, tokenizer)
    (tmp / "organism.json").write_text(json.dumps({"preset": preset, **asdict(spec)}, indent=1))
    try:
        tmp.rename(path)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return path
