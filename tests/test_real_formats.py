"""Real models' formats on the hf backend, with random-init micro models of the real families.

End of turn (the generation config's eos ids, not only the tokenizer's eos), training on the
sampled ids, the judge's answer word summed over its first-token variants, raw log-probs without
holding every logit, and a round of every paper profile's family on CPU.
"""
from __future__ import annotations

import json

import pytest
import torch

from silab.config import load_profile
from silab.engine.backends.hf import HFBackend
from silab.engine.micro import FAMILIES, build_micro
from silab.engine import session
from silab.engine.tokens import (answer_token_ids, chat_judge_template, encode_prompt, end_of_turn_id,
                                 stop_token_ids)
from silab.tasks import format_prompt
from silab.tasks.base import Item

NOOP = lambda done, total: None  # noqa: E731
PAPER = {"phi3_math": "phi3", "phi3_gsm8k": "phi3", "phi35mini_math": "phi3", "phi35mini_gsm8k": "phi3",
         "phi4mini_math": "phi3", "phi4mini_gsm8k": "phi3", "phi4mini_prontoqa": "phi3",
         "llama31_8b_math": "llama3", "llama31_8b_gsm8k": "llama3", "llama32_3b_math": "llama3",
         "llama32_3b_gsm8k": "llama3"}
SMALL = ["model.backend=hf", "model.device=cpu", "model.dtype=float32", "model.max_new_tokens=24",
         "sampling.n_samples=4", "sampling.batch_size=4", "sampling.test_samples=2", "verify.batch_size=16",
         "train.batch_size=4", "task.n_prompts=4", "task.n_test=3", "task.n_external=0"]


@pytest.fixture(scope="module")
def micros(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro")
    return {family: str(build_micro(family, root / family)) for family in FAMILIES}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three local files in the columns of the hub datasets (MATH, GSM8K, ProntoQA)."""
    root = tmp_path_factory.mktemp("data")
    rows = {
        "math": [{"problem": f"What is {i} + {i}?", "solution": f"It is $\\boxed{{{2 * i}}}$."} for i in range(12)],
        "gsm8k": [{"question": f"Ann has {i} apples and buys {i}. How many?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}
                  for i in range(12)],
        "prontoqa": [{"question": f"Every cat is a mammal. Max{i} is a cat. True or false: Max{i} is a mammal.",
                      "answer": "True" if i % 2 else "False"} for i in range(12)],
    }
    files = {}
    for task, items in rows.items():
        path = root / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        files[task] = str(path)
    return files


def backend(path: str, **over) -> HFBackend:
    profile = load_profile("phi3_math", SMALL + [f"model.path={path}"] + [f"{k}={v}" for k, v in over.items()])
    return HFBackend(profile, path)


def test_every_family_stops_on_its_end_of_turn(micros):
    from transformers import AutoTokenizer

    for family, path in micros.items():
        tok = AutoTokenizer.from_pretrained(path)
        fam = FAMILIES[family]
        end = tok.convert_tokens_to_ids(fam.end_of_turn)
        assert end_of_turn_id(tok) == end
        assert set(stop_token_ids(tok, path)) == {tok.convert_tokens_to_ids(t) for t in fam.generation_eos} | {tok.eos_token_id}
    phi = AutoTokenizer.from_pretrained(micros["phi3"])
    assert phi.eos_token == "<|endoftext|>" and end_of_turn_id(phi) != phi.eos_token_id  # the Phi trap


def test_samples_end_at_the_first_stop_id_and_nothing_after(micros):
    b = backend(micros["phi3"], **{"model.max_new_tokens": 40})
    rows = b.sample(["<s><|user|>\nWhat is 2 + 2?<|end|>\n<|assistant|>\n"] * 2, 12, seed=1, progress=NOOP)
    samples = [s for row in rows for s in row]
    stops = set(b.stop_ids)
    ended = [s for s in samples if s.finished]
    assert ended and len(ended) < len(samples)  # the nudged model ends some turns, not all
    for s in samples:
        inside = [t for t in s.tokens[:-1] if t in stops]
        assert not inside, "a stop id inside a sample: tokens after the end of turn were kept"
        assert s.finished == (s.tokens[-1] in stops)
        assert len(s.tokens) == 40 or s.finished
        assert "<|end|>" not in s.text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_log_probs_equal_a_teacher_forced_pass(micros, family):
    """Raw log-probs, gathered step by step, equal a second full pass over the same ids (and are
    those of the raw distribution even when sampling with another temperature and top-p)."""
    b = backend(micros[family], **{"sampling.temperature": 0.7, "sampling.top_p": 0.9})
    prompt = "Question: what is 3 + 4? Answer:"
    prompt_ids = encode_prompt(b.tok, prompt)
    for s in b.sample([prompt], 6, seed=3, progress=NOOP)[0]:
        ids = torch.tensor([prompt_ids + s.tokens])
        with torch.no_grad():
            logits = b.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float().log_softmax(-1)
        forced = logits.gather(-1, torch.tensor(s.tokens).unsqueeze(-1)).sum().item()
        assert s.logprob == pytest.approx(forced, abs=1e-3)


def test_judge_word_is_summed_over_its_first_token_variants(micros):
    """On the sentencepiece micro tokenizer "True" alone encodes as `▁True`, but after the reply's
    opening newline the model spells it otherwise: every variant counts."""
    b = backend(micros["phi3"])
    tok = b.tok
    true_ids, false_ids = answer_token_ids(tok, ["True", "False"])
    pieces = set(tok.convert_ids_to_tokens(true_ids))
    assert {"True", "▁True"} <= pieces and not set(true_ids) & set(false_ids)
    judge = chat_judge_template(tok, "Is it right? Reply True or False.").format(prompt="<|user|>\nQ<|end|>\n<|assistant|>\n", response="4")
    in_context = encode_prompt(tok, judge + "True")[len(encode_prompt(tok, judge)) - 1:]
    assert set(in_context) & set(true_ids)  # however "True" is spelled after this prompt, it is counted
    probs = b.next_token_probs([judge], ["True", "False"], NOOP)[0]
    with torch.no_grad():
        full = b.model(input_ids=torch.tensor([encode_prompt(tok, judge)])).logits[0, -1].float().softmax(-1)
    assert probs[0] == pytest.approx(full[true_ids].sum().item(), rel=1e-5)
    assert probs[1] == pytest.approx(full[false_ids].sum().item(), rel=1e-5)
    assert probs[0] > full[tok.encode("True", add_special_tokens=False)[0]].item()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_every_paper_profile_renders_through_its_family(micros, name):
    from transformers import AutoTokenizer

    profile = load_profile(name)
    tok = AutoTokenizer.from_pretrained(micros[PAPER[name]])
    prompt = format_prompt(profile.task, Item("x", "What is 1 + 1?", "2"), tok)
    end = tok.convert_tokens_to_ids(FAMILIES[PAPER[name]].end_of_turn)
    for question in (profile.verify.tf_question, profile.verify.qe_question):
        assert question, f"{name}: the judge question is given, its chat turn built from the tokenizer"
        judge = chat_judge_template(tok, question).replace("{prompt}", prompt).replace("{response}", "It is 2.")
        ids = encode_prompt(tok, judge)
        assert ids.count(end) == 3  # the question's turn, the answer's turn, the judge question's turn
        assert judge.startswith(prompt) and question in judge


@pytest.mark.parametrize("name", ["phi3_math", "llama32_3b_gsm8k", "phi4mini_prontoqa"])
def test_a_round_of_each_family_runs_on_cpu(micros, data, tmp_path, name):
    """Two rounds of a paper profile on a micro model of its family (and Qwen2 for ProntoQA): no
    tokens after the end of turn on disk, truncation counted, and round 1 trained on the exact ids
    its picks were sampled as (those U_v measured)."""
    family = {"phi3_math": "phi3", "llama32_3b_gsm8k": "llama3", "phi4mini_prontoqa": "qwen2"}[name]
    task = load_profile(name).task.name
    profile = load_profile(name, SMALL + [f"model.path={micros[family]}", "rounds=1", "train.lr=1e-3",
                                          f"task.train_files=['{data[task]}']", f"task.test_files=['{data[task]}']"])
    loop = session.run_rounds(session.new_run(profile, str(tmp_path / "run")), lambda event: None)
    records = loop.run.records()
    assert [r["round"] for r in records] == [0, 1]
    stops = set(loop.backend.stop_ids)
    rows = [json.loads(line) for line in (tmp_path / "run" / "rounds" / "000" / "samples.jsonl").read_text().splitlines()]
    responses = [r for row in rows for r in row["responses"]]
    assert records[0]["truncated"] == sum(not r["finished"] for r in responses)
    assert all(t not in stops for r in responses for t in r["tokens"][:-1])
    loop.prev = rows  # round 1 trained on round 0's picks
    examples, _ = loop.training_set(1)
    b = loop.backend
    b.load_adapter(None)  # pi_0, the policy that sampled round 0
    for (prompt_ids, target), row in zip(examples, rows):
        pick = row["responses"][row["pick"]]
        assert target == pick["tokens"] and prompt_ids == encode_prompt(b.tok, row["prompt"])
        with torch.no_grad():
            logits = b.model(input_ids=torch.tensor([prompt_ids + target])).logits[0, len(prompt_ids) - 1:-1]
        forced = logits.float().log_softmax(-1).gather(-1, torch.tensor(target).unsqueeze(-1)).sum().item()
        assert forced == pytest.approx(pick["logprob"], abs=1e-3)  # the NLL U_v measured is the target's


def test_building_a_micro_model_prints_no_progress_bar(tmp_path, capfd):
    """transformers' "Writing model shards" bar would land in silab's own progress lines."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()       # as in a fresh process (an hf backend turns them off for good)
    try:
        build_micro("llama3", tmp_path / "m")
        assert hf_logging.is_progress_bar_enabled()   # the setting is restored, not switched off globally
    finally:
        if not was_on:
            hf_logging.disable_progress_bar()
    assert "Writing model shards" not in capfd.readouterr().err
