"""The verifier registry: tf and qe are two entries, a new method is one more, an unknown one is refused."""
from __future__ import annotations

import numpy as np
import pytest

from silab.config import load_profile
from silab.engine import session, verifiers
from silab.engine.organism import build_tokenizer
from silab.engine.verifiers import Verifier
from silab.errors import UsageError
from silab.runs.store import read_jsonl

# A throwaway third method: the model's hard verdict (1 when it prefers "True", else 0), with its
# own prompt and words instead of the profile's tf keys. Adding it is this one entry.
HARD = Verifier(template=lambda v: "{prompt}{response}?", question=lambda v: "",
                words=lambda v: ["True", "False"], score=lambda probs: (probs[:, 0] > probs[:, 1]).astype(float),
                yes=0, no=1)


def test_profiles_accept_the_registered_methods_and_refuse_others(micro):
    path, overrides = micro
    assert verifiers.names() == ["tf", "qe"]
    for method in verifiers.names():
        assert load_profile(path, overrides + [f"verify.method={method}"]).verify.method == method
    with pytest.raises(UsageError, match="verify.method.*hard"):
        load_profile(path, overrides + ["verify.method=hard"])


def test_a_new_method_is_one_entry(micro, tmp_path, monkeypatch):
    monkeypatch.setitem(verifiers.METHODS, "hard", HARD)
    path, overrides = micro
    profile = load_profile(path, overrides + ["verify.method=hard"])   # the config asks names()
    loop = session.new_run(profile, tmp_path / "run").loop(lambda event: None)
    loop.run_round()
    rows = read_jsonl(tmp_path / "run" / "rounds" / "000" / "samples.jsonl")
    scores = [r["score"] for row in rows for r in row["responses"]]
    assert set(scores) <= {0.0, 1.0} and 0 < sum(scores) < len(scores)   # its score rule was used
    picks, verdicts = loop.own_examples(rows)                            # and its rehearsal words
    tok = loop.backend.tok
    assert {tok.decode(target[:-1]) for _, target in verdicts} == {"True", "False"}
    assert all(tok.decode(prompt).endswith("?") for prompt, _ in verdicts)                # and its prompt


def test_scores_stay_in_the_unit_interval():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=50)[:, :5]   # some mass left to other tokens, as in a model
    for method in verifiers.METHODS.values():
        words = 2 if method.score is verifiers.true_share else 5
        score = method.score(probs[:, :words])
        assert score.shape == (50,) and ((score >= 0) & (score <= 1)).all()


def test_the_judge_prompt_comes_from_the_profile_or_the_chat_template(micro):
    path, overrides = micro
    tok = build_tokenizer()
    profile = load_profile(path, overrides)
    judge = verifiers.judge(profile, tok)
    assert (judge.template, judge.words, judge.yes, judge.no) == ("{prompt}{response}?", ["True", "False"], "True", "False")
    assert judge.prompt("1+2=", "3 \\boxed{3} {x}") == "1+2=3 \\boxed{3} {x}?"   # other braces stay
    qe = verifiers.judge(load_profile(path, overrides + ["verify.method=qe"]), tok)
    assert (qe.template, qe.yes, qe.no) == ("{prompt}{response}#", "5", "1")

    asked = load_profile(path, overrides + ['verify.tf_question="Right?"'])
    assert verifiers.judge(asked, tok).template == "{prompt}{response}\nRight?\n"   # no chat: plain
    tok.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    chat = load_profile(path, overrides + ['verify.tf_question="Right?"', "task.chat=true"])
    assert verifiers.judge(chat, tok).template == "{prompt}{response}</s><user>Right?</s><assistant>"
