"""Rows in, Items out, and the seeded split every run uses.

Each task says how one row becomes an Item (`parse_row`, None for a row without a usable answer)
and where its data lives (`source`, `subsets`). This module does the rest the same way for all of
them: read with `datasets.load_dataset` (the hub by default, local jsonl/parquet/csv when the
profile lists `task.train_files` / `task.test_files`), count the rows that were skipped, and cut the
train/test items into disjoint prompts, external pool, few-shot examples and test items.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from silab.config import TaskConfig
from silab.errors import UsageError
from silab.tasks.base import Item
from silab.tasks.registry import get_task

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def field_text(row: dict, *names: str) -> str | None:
    """The first of `names` that holds a non-empty value, as text (csv cells may be ints or NaN)."""
    for name in names:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        if text:
            return text
    return None


def _reason(e: BaseException) -> str:
    """The most specific one-line reason inside an exception chain (datasets wraps its errors)."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else type(e).__name__)


# ---------------------------------------------------------------------------------------------
# reading rows


def _files(cfg: TaskConfig, split: str) -> list[str]:
    return list(cfg.train_files if split == "train" else cfg.test_files)


def _hub_split(cfg: TaskConfig, split: str) -> str:
    return cfg.train_split if split == "train" else cfg.test_split


def _hub_source(task, cfg: TaskConfig) -> tuple[str, list[str | None]]:
    """(dataset id, configs to concatenate): the profile's, else the task's defaults."""
    subsets = [s.strip() for s in cfg.subset.split(",") if s.strip()]
    if cfg.source:
        return cfg.source, subsets or [None]
    return task.source, subsets or list(getattr(task, "subsets", ())) or [None]


def describe(task, cfg: TaskConfig, split: str) -> str:
    """Where the rows of `split` come from, for error messages."""
    files = _files(cfg, split)
    if files:
        return ", ".join(files)
    if not hasattr(task, "source"):
        return f"task {task.name} ({split})"
    source, subsets = _hub_source(task, cfg)
    which = f" [{', '.join(subsets)}]" if subsets != [None] else ""
    return f"{source}{which} split '{_hub_split(cfg, split)}'"


def read_file(path: str) -> list[dict]:
    """All rows of one local jsonl/json/parquet/csv file."""
    import datasets

    p = Path(path).expanduser()
    kind = FORMATS.get(p.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: unsupported file type '{p.suffix}' (use .jsonl, .json, .parquet or .csv)")
    if not p.is_file():
        raise UsageError(f"{path}: file not found")
    try:
        ds = datasets.load_dataset(kind, data_files=str(p.resolve()), split="train")
    except Exception as e:  # datasets raises many kinds; all mean "this file is not readable"
        raise UsageError(f"{path}: cannot read as {p.suffix.lstrip('.')}: {_reason(e)}") from None
    return ds.to_list()


def read_hub(source: str, subset: str | None, split: str) -> list[dict]:
    """All rows of one split of a hub dataset (or one already in the local cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(source, subset, split=split)
    except Exception as e:
        name = source + (f" ({subset})" if subset else "")
        raise UsageError(f"{name}: cannot load split '{split}' from the Hugging Face hub: {_reason(e)} "
                         f"(offline? set task.train_files / task.test_files to local files)") from None
    return ds.to_list()


def read_rows(task, cfg: TaskConfig, split: str) -> list[dict]:
    """Rows of `split` ("train" or "test"): the profile's local files if any, else the hub."""
    files = _files(cfg, split)
    if files:
        return [row for path in files for row in read_file(path)]
    source, subsets = _hub_source(task, cfg)
    return [row for subset in subsets for row in read_hub(source, subset, _hub_split(cfg, split))]


def load_items(task, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
    """Parse every row with `task.parse_row`; returns (items, rows skipped without a usable answer).

    Ids come from the data where it has them, else "<split>-<row>"; a repeated id gets "#k" so ids
    stay unique within the split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    items, skipped, seen = [], 0, set()
    for i, row in enumerate(read_rows(task, cfg, split)):
        item = task.parse_row(row, f"{split}-{i}")
        if item is None:
            skipped += 1
            continue
        if item.id in seen:
            k = 2
            while f"{item.id}#{k}" in seen:
                k += 1
            item = Item(id=f"{item.id}#{k}", question=item.question, gold=item.gold, solution=item.solution)
        seen.add(item.id)
        items.append(item)
    return items, skipped


# ---------------------------------------------------------------------------------------------
# the split


@dataclass
class Splits:
    """What one run works on. All four lists are disjoint, by id and by question text."""
    prompts: list[Item]    # self-improvement prompts (train split)
    external: list[Item]   # the external labelled pool M (train split)
    test: list[Item]       # held-out accuracy (test split)
    skipped: int           # rows without a usable answer, both splits
    shots: list[Item] = field(default_factory=list)  # few-shot examples (train split)
    duplicates: int = 0    # train/test rows dropped for repeating an earlier id or question


def question_key(text: str) -> str:
    """Questions that differ only in case and spacing are the same question."""
    return " ".join(text.split()).lower()


def _shuffled(items: list[Item], seed: str) -> list[Item]:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def _unique(items: list[Item], ids: set, questions: set) -> tuple[list[Item], int]:
    """Items whose id and question were not seen yet (updating the seen sets), and how many were not."""
    kept = []
    for it in items:
        key = question_key(it.question)
        if it.id in ids or key in questions:
            continue
        ids.add(it.id)
        questions.add(key)
        kept.append(it)
    return kept, len(items) - len(kept)


def split_items(task, cfg: TaskConfig, seed: int) -> Splits:
    """Test items first (n_test after a seeded shuffle), then prompts, external pool and few-shot
    examples from the rest of the train split, so the same source may serve both splits.

    `task` is a Task or a registered name. Raises UsageError when there are too few usable items.
    """
    if isinstance(task, str):
        task = get_task(task)
    test_all, test_skipped = task.load(cfg, "test")
    train_all, train_skipped = task.load(cfg, "train")
    skipped = test_skipped + train_skipped

    test_pool, dup_test = _unique(test_all, set(), set())
    test = _shuffled(test_pool, f"{seed}:test")[:cfg.n_test]
    if len(test) < cfg.n_test:
        raise UsageError(f"{describe(task, cfg, 'test')}: only {len(test)} usable test items but "
                         f"task.n_test = {cfg.n_test} ({test_skipped} rows without a usable answer, "
                         f"{dup_test} duplicates)")

    # only the chosen test items are excluded: a 500-row source can serve both splits
    pool, dup_train = _unique(train_all, {it.id for it in test}, {question_key(it.question) for it in test})
    pool = _shuffled(pool, f"{seed}:train")
    a, b = cfg.n_prompts, cfg.n_prompts + cfg.n_external
    rest = [it for it in pool[b:] if it.solution]
    if len(pool) < b or len(rest) < cfg.few_shot:
        need = f"task.n_prompts {cfg.n_prompts} + task.n_external {cfg.n_external}"
        if cfg.few_shot:
            need += f" + task.few_shot {cfg.few_shot} (with solutions)"
        raise UsageError(f"{describe(task, cfg, 'train')}: only {len(pool)} usable train items, need "
                         f"{need} ({train_skipped} rows without a usable answer, {dup_train} duplicates "
                         f"of test or earlier train items)")
    return Splits(prompts=pool[:a], external=pool[a:b], test=test, skipped=skipped,
                  shots=rest[:cfg.few_shot], duplicates=dup_test + dup_train)
