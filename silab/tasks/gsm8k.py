"""GSM8K (Cobbe et al. 2021): grade-school word problems with a number for an answer.

Hub default: openai/gsm8k, config "main", columns question and answer, where the answer is a worked
solution ending in "#### 72" (with <<48/2=24>> calculator notes, removed from our solutions).

Only the model's own turn is read (up to a chat-turn token or a new "Question:" line: a model that runs
on into a question of its own invention answers that one too). Its answer is, in order of trust: the
number after the first "####", in the last \\boxed{}, after the last "the answer is" / "Answer:", else
the last number. Numbers are compared exactly as rationals after dropping thousands separators (commas
or spaces: "1 000"), "$", "%", units and trailing zeros ("$1,080.00" == "1080").
"""
from __future__ import annotations

import re

from silab.config import TaskConfig
from silab.tasks.base import Item
from silab.tasks.loading import field_text, load_items
from silab.tasks.extract import last_boxed, own_turn
from silab.tasks.math_task import normalize_math, parse_number

# a number not glued to a word or a preceding number ("5-3" holds 5 and 3, not -3); 1,000 is one number
_NUM = re.compile(r"(?<![\w.])(?:-(?=\.?\d))?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![\d.]))?"
                  r"|(?<![\w.])-?\.\d+")
# 1 000 000 and 1\,000 (space or thin space between groups of three); "2 100-metre races" stays 2 and 100
_SPACED = re.compile(r"(?<![\d.,])\d{1,3}(?:(?:[ \u00a0\u2009\u202f]|\\,)\d{3})+(?![\w-])")
_MARKER = re.compile(r"\banswer\b\s*(?:is\b|:|=)", re.IGNORECASE)  # "the final answer is", "Answer:"


def canonical_number(text: str) -> str | None:
    """"$1,080.00" -> "1080", "2.50" -> "2.5", "3/4" -> "0.75", "1/3" -> "1/3"; None if not a number."""
    value = parse_number(_clean(text).strip().rstrip("."))
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:  # not a terminating decimal
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    while (value * 10 ** digits).denominator != 1:
        digits += 1
    scaled = str(abs(int(value * 10 ** digits))).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + scaled[:-digits] + "." + scaled[-digits:]


def _clean(text: str) -> str:
    """Strip what surrounds numbers in answers: money, percent, unicode minus, markdown."""
    text = text.replace("−", "-").replace("–", "-").replace("\\$", "$").replace("\\%", "%")
    text = re.sub(r"-\s*\$", "-", text)
    text = _SPACED.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)
    return re.sub(r"[$%*`]", "", text)


def _numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUM.finditer(_clean(text))]


def find_answer(text: str) -> str | None:
    """The raw final number of a response (see the module docstring for the order of rules)."""
    text = own_turn(text)
    if "####" in text:
        nums = _numbers(text.split("####", 1)[1])
        if nums:
            return nums[0]
    boxed = last_boxed(text)
    if boxed is not None:
        value = parse_number(normalize_math(boxed))
        if value is not None:
            return str(value)
        nums = _numbers(boxed)
        if nums:
            return nums[-1]
    for m in reversed(list(_MARKER.finditer(text))):
        nums = _numbers(text[m.end():].split("\n", 1)[0])
        if nums:
            return nums[0]
    nums = _numbers(text)
    return nums[-1] if nums else None


def gold_from_solution(answer: str) -> str | None:
    """The canonical number after "####" in a GSM8K answer field (or the field itself if a number)."""
    tail = answer.rsplit("####", 1)[1] if "####" in answer else answer
    return canonical_number(tail)


def clean_solution(answer: str, gold: str) -> str:
    """The worked solution without calculator notes, ending in the sentence our prompts ask for."""
    body = answer.rsplit("####", 1)[0] if "####" in answer else ""
    body = re.sub(r"<<[^<>]*>>", "", body).strip()
    final = f"The final answer is {gold}."
    return f"{body}\n{final}" if body else final


class GSM8KTask:
    name = "gsm8k"
    source = "openai/gsm8k"
    subsets = ("main",)

    def extract_answer(self, text: str) -> str | None:
        raw = find_answer(text)
        return canonical_number(raw) if raw is not None else None

    def is_correct(self, text: str, gold: str) -> bool:
        pred = self.extract_answer(text)
        return pred is not None and pred == canonical_number(gold)  # canonical strings are unique

    def parse_row(self, row: dict, fallback_id: str) -> Item | None:
        question, answer = field_text(row, "question"), field_text(row, "answer")
        if not question or not answer:
            return None
        gold = gold_from_solution(answer)
        if gold is None:
            return None
        return Item(id=field_text(row, "id") or fallback_id, question=question, gold=gold,
                    solution=clean_solution(answer, gold))

    def load(self, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
        return load_items(self, cfg, split)
