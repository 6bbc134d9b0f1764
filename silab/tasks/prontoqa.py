"""ProntoQA (Saparov & He 2023): is a statement True or False, given made-up facts and rules?

Hub default: renma/ProntoQA (the Logic-LM release). It has a single split, "validation" (500 rows),
so its profiles set train_split = test_split = "validation" and `split_items` keeps them disjoint.
Columns: id, context, question ("Is the following statement true or false? Max is sour."),
options (["A) True", "B) False"]) and answer ("A" or "B"). Also read: answer/label given as
True/False or a bool, `query` for the question, and a reasoning column (explanation /
chain_of_thought / solution) when the file has one; without it the reference solution is the bare
final sentence. A letter answer with no options means A = True, B = False (the hub's convention).

A response's answer: the last \\boxed{}, else the last "answer is/: X" (X = True, False, A or B),
else the last "true"/"false" outside the phrase "true or false" ("not true" counts as False).

A verdict on a stated claim, "It is [not] true/false that S", is the checker's one reading of
negation inside the claim (it never sees the question): a negative verdict on a negated claim is a
double negative and affirms ("It is false that Max is not sour" -> True); otherwise the verdict
stands for the question's statement, which models restate ("It is true that Max is not sour" ->
True). So a model that answers "Max is not sour?" with "It is false that Max is not sour" is
misread; the phrasing is rare, and the usual restatement is read right.
"""
from __future__ import annotations

import re

from silab.config import TaskConfig
from silab.tasks.base import Item
from silab.tasks.loading import field_text, load_items
from silab.tasks.extract import last_boxed

_WORD = {"true": "True", "false": "False", "a": "True", "b": "False", "yes": "True", "no": "False"}
_MARKER = re.compile(r"\banswer\s*(?:is|:)?\s*:?\s*(not\s+)?\(?\s*(true\b|false\b|(?-i:[AB])\b)", re.IGNORECASE)
_BARE = re.compile(r"\b(not\s+)?(true|false)\b", re.IGNORECASE)
_CLAIM = re.compile(r"\bit\s+is\s+(not\s+)?(true|false)\s+that\s+([^.\n]*)", re.IGNORECASE)
_NEGATED = re.compile(r"\bnot\b|n't\b", re.IGNORECASE)


def _flip(value: str, negated: bool) -> str:
    return {"True": "False", "False": "True"}[value] if negated else value


def truth_value(text) -> str | None:
    """"True"/"False" for a gold or a short answer (True, false, A, B, a bool); None otherwise."""
    if isinstance(text, bool):
        return str(text)
    word = str(text).strip().strip(".*()").strip()
    m = re.fullmatch(r"([AB])\)?\s*(True|False)?", word, re.IGNORECASE)
    if m and m.group(2):
        return m.group(2).capitalize()
    return _WORD.get(word.lower())


def _gold(row: dict) -> str | None:
    answer = row.get("answer", row.get("label"))
    if isinstance(answer, bool):
        return str(answer)
    answer = field_text(row, "answer", "label")
    if answer is None:
        return None
    letter = answer.strip().rstrip(")").upper()
    options = row.get("options")  # a list, or its text in a csv cell
    options = " ".join(map(str, options)) if isinstance(options, list) else field_text(row, "options") or ""
    m = re.search(rf"\b{letter}\)\s*(True|False)\b", options, re.IGNORECASE) if letter in ("A", "B") else None
    return m.group(1).capitalize() if m else truth_value(answer)


class ProntoQATask:
    name = "prontoqa"
    source = "renma/ProntoQA"
    subsets = ()

    def extract_answer(self, text: str) -> str | None:
        text = re.sub(r"[*`_]", "", text)
        boxed = last_boxed(text)
        if boxed is not None:
            value = truth_value(re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed))
            if value is not None:
                return value
        markers = list(_MARKER.finditer(text))
        if markers:
            m = markers[-1]
            return _flip(_WORD[m.group(2).lower()], bool(m.group(1)))
        text = re.sub(r"\b(?:true\s+or\s+false|false\s+or\s+true)\b", " ", text, flags=re.IGNORECASE)
        bare = list(_BARE.finditer(text))
        if not bare:
            return None
        m = bare[-1]
        value = _flip(m.group(2).capitalize(), bool(m.group(1)))
        claim = next((c for c in _CLAIM.finditer(text) if c.start(2) == m.start(2)), None)
        if claim and value == "False" and _NEGATED.search(claim.group(3)):
            return "True"  # a double negative: "it is false that Max is not sour"
        return value

    def is_correct(self, text: str, gold: str) -> bool:
        pred = self.extract_answer(text)
        return pred is not None and pred == truth_value(gold)

    def parse_row(self, row: dict, fallback_id: str) -> Item | None:
        question = field_text(row, "question", "query")
        gold = _gold(row)
        if not question or gold is None:
            return None
        context = field_text(row, "context", "facts")
        if context:
            question = f"{context}\n\n{question}"
        steps = {k: " ".join(map(str, v)) for k, v in row.items() if isinstance(v, list)}  # a CoT list
        reasoning = field_text({**row, **steps}, "explanation", "chain_of_thought", "solution")
        final = f"The answer is {gold}."
        solution = f"{reasoning}\n{final}" if reasoning else final
        return Item(id=field_text(row, "id") or fallback_id, question=question, gold=gold, solution=solution)

    def load(self, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
        return load_items(self, cfg, split)
