"""How the model judges its own answers: one entry in METHODS per `verify.method`.

A verifier is a prompt that asks the model about one of its answers, the answer words read from
the next-token distribution after that prompt, a rule that turns their probabilities into a score
in [0, 1], and which words say "right" and "wrong" when the model rehearses its own confident
verdicts (train.judge_rehearsal). The loop and `silab doctor` ask `judge(profile, tokenizer)` and
never test a method's name, so a new method is one entry here; the profile accepts its name
because `names()` lists it. Light at import (numpy only): the config asks at every construction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from silab.engine.tokens import chat_judge_template, has_chat_template


@dataclass(frozen=True)
class Verifier:
    template: Callable   # VerifyConfig -> the judge prompt, with {prompt} and {response}
    question: Callable   # VerifyConfig -> the question alone ("": none); with task.chat it replaces
    #                      the template, which is then built from the tokenizer's chat template
    words: Callable      # VerifyConfig -> the answer words whose next-token probabilities are read
    score: Callable      # probabilities [n, len(words)] -> scores [n] in [0, 1]
    yes: int             # the index in words of the verdict "right" (rehearsed on confident picks)
    no: int              # ... and of "wrong"


def true_share(probs: np.ndarray) -> np.ndarray:
    """s = P(True) / (P(True) + P(False)): the first word against the second."""
    return probs[:, 0] / np.maximum(probs[:, 0] + probs[:, 1], 1e-30)


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """Expected score over the K score words (renormalised), mapped from 1..K onto [0, 1]."""
    probs = probs / np.maximum(probs.sum(-1, keepdims=True), 1e-30)
    k = probs.shape[-1]
    return (probs @ np.arange(k)) / (k - 1)


METHODS = {
    # "Is the answer above correct? Answer True or False.": P(True) against P(False)
    "tf": Verifier(template=lambda v: v.tf_template, question=lambda v: v.tf_question,
                   words=lambda v: [v.true_token, v.false_token], score=true_share, yes=0, no=1),
    # "Rate the answer above from 1 (wrong) to 5 (correct).": the expected grade
    "qe": Verifier(template=lambda v: v.qe_template, question=lambda v: v.qe_question,
                   words=lambda v: list(v.qe_tokens), score=expected_grade, yes=-1, no=0),
}


def names() -> list[str]:
    """The methods a profile may name in verify.method."""
    return list(METHODS)


def fill(template: str, **values: str) -> str:
    """Fill {prompt} / {response} in one pass: other braces (\\boxed{}) and braces inside the
    values stay as they are."""
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class Judge:
    """A verifier set up for one profile and tokenizer: the prompt to fill and the words to read."""
    template: str
    words: list[str]
    verifier: Verifier

    def prompt(self, prompt: str, response: str) -> str:
        return fill(self.template, prompt=prompt, response=response)

    def score(self, probs: np.ndarray) -> np.ndarray:
        return self.verifier.score(np.asarray(probs))

    @property
    def yes(self) -> str:
        return self.words[self.verifier.yes]

    @property
    def no(self) -> str:
        return self.words[self.verifier.no]


def judge(profile, tokenizer) -> Judge:
    """The profile's judge. A profile that gives the judge's question with task.chat = true gets
    its template from the tokenizer's chat template, so it cannot drift from the model's format."""
    v = profile.verify
    method = METHODS[v.method]
    template, question = method.template(v), method.question(v)
    if question:
        template = chat_judge_template(tokenizer, question) if profile.task.chat and has_chat_template(tokenizer) \
            else "{prompt}{response}\n" + question + "\n"
    return Judge(template, method.words(v), method)
