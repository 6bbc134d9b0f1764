"""Prompt formatting (plain, few-shot, chat template) and the paper profiles."""

import pytest

from silab.config import TaskConfig, load_profile, profiles_dir
from silab.tasks import Item, format_prompt, get_task

ITEM = Item(id="q", question="What is {x} in \\boxed{}?", gold="4")
SHOTS = [Item(id="s1", question="1+1?", gold="2", solution="1+1 = 2.\nThe final answer is 2."),
         Item(id="s2", question="2+5?", gold="7")]  # no solution: the gold stands in

PHI = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
       "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NO_SYSTEM = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}" + PHI)


def tokenizer(chat_template):
    """A real transformers tokenizer (one-word vocabulary) carrying a chat template."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = chat_template
    return tok


def test_plain_zero_shot_keeps_braces():
    cfg = TaskConfig(prompt_template="Q: {question}\nA:")
    assert format_prompt(cfg, ITEM) == "Q: What is {x} in \\boxed{}?\nA:"
    assert format_prompt(TaskConfig(), ITEM) == ITEM.question


def test_plain_few_shot_and_system():
    cfg = TaskConfig(prompt_template="Q: {question}\nA:", system_prompt="Be brief.")
    assert format_prompt(cfg, ITEM, shots=SHOTS) == (
        "Be brief.\n\n"
        "Q: 1+1?\nA: 1+1 = 2.\nThe final answer is 2.\n\n"
        "Q: 2+5?\nA: 7\n\n"
        "Q: What is {x} in \\boxed{}?\nA:")
    cfg = TaskConfig(prompt_template="{question}\n")  # template ending in whitespace: no extra space
    assert format_prompt(cfg, ITEM, shots=SHOTS[1:]) == "2+5?\n7\n\nWhat is {x} in \\boxed{}?\n"


def test_chat_template_with_shots_and_system():
    cfg = TaskConfig(prompt_template="Solve: {question}", chat=True, system_prompt="You are careful.")
    text = format_prompt(cfg, ITEM, tokenizer(PHI), shots=SHOTS[:1])
    assert text == ("<|system|>You are careful.<|end|>"
                    "<|user|>Solve: 1+1?<|end|><|assistant|>1+1 = 2.\nThe final answer is 2.<|end|>"
                    "<|user|>Solve: What is {x} in \\boxed{}?<|end|><|assistant|>")


def test_chat_template_without_system_role_folds_it_into_the_user_turn():
    cfg = TaskConfig(prompt_template="Solve: {question}", chat=True, system_prompt="You are careful.")
    text = format_prompt(cfg, ITEM, tokenizer(NO_SYSTEM))
    assert text == "<|user|>You are careful.\n\nSolve: What is {x} in \\boxed{}?<|end|><|assistant|>"


def test_chat_false_or_no_template_gives_plain_text():
    cfg = TaskConfig(prompt_template="Solve: {question}", chat=True)
    assert format_prompt(cfg, ITEM, tokenizer(None)) == "Solve: What is {x} in \\boxed{}?"
    assert format_prompt(cfg, ITEM, None) == "Solve: What is {x} in \\boxed{}?"
    cfg = TaskConfig(prompt_template="Solve: {question}", chat=False)
    assert format_prompt(cfg, ITEM, tokenizer(PHI)) == "Solve: What is {x} in \\boxed{}?"


# ---------------------------------------------------------------------------------------------
# profiles

PROFILES = profiles_dir()
PAPER = sorted(p for p in PROFILES.glob("*.toml") if not p.stem.startswith("tiny"))


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_profile_loads(path):
    profile = load_profile(str(path))
    assert profile.name == path.stem
    get_task(profile.task.name)  # a registered task


def test_paper_profiles_exist():
    names = {p.stem for p in PAPER}
    for model in ("phi4mini", "phi35mini", "phi3", "llama32_3b", "llama31_8b"):
        assert {f"{model}_gsm8k", f"{model}_math"} <= names
    assert "phi3_math" in names and "phi4mini_prontoqa" in names


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_settings(path):
    p = load_profile(str(path))
    assert (p.sampling.n_samples, p.lora.rank, p.train.lr, p.rounds) == (16, 16, 1e-5, 10)
    assert (p.model.backend, p.model.dtype, p.model.device) == ("vllm", "bfloat16", "cuda")
    assert p.task.chat and p.verify.method == "tf" and p.verify.sigma == 0.5
    assert p.model.max_new_tokens == (1024 if p.task.name == "math" else 512)
    assert p.verify.true_token in p.verify.tf_template and p.verify.false_token in p.verify.tf_template
    # the model's own format instruction is what its checker reads first
    task = get_task(p.task.name)
    shown = {"gsm8k": "The final answer is 12.", "math": "so $\\boxed{12}$.", "prontoqa": "The answer is True."}
    gold = {"gsm8k": "12", "math": "12", "prontoqa": "True"}[p.task.name]
    assert task.is_correct(shown[p.task.name], gold)
    if p.task.source == "renma/ProntoQA":  # one 500-row split serves both sides
        assert p.task.n_prompts + p.task.n_external + p.task.n_test <= 500
