"""Micro models of the real families, built offline in seconds: random-init `Phi3ForCausalLM`,
`LlamaForCausalLM` (Llama-3 format) and `Qwen2ForCausalLM`, each with a tokenizer that carries that
family's special tokens and a chat template of that family's shape, and a generation config whose
eos list holds the end-of-turn id, as the real models' do.

They know nothing, but they speak the real formats, so tests and `silab doctor` can check stopping,
token bookkeeping, templates and memory without a hub. The phi3 tokenizer is sentencepiece-style
(`▁` word pieces, so "True" alone encodes as `▁True` but after a newline as `True`); llama3 and
qwen2 are byte-level BPE. The lm_head row of the end-of-turn token is nudged so that about one step
in `1 / end_rate` ends the turn: some samples end, some run into max_new_tokens.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

PHI3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
QWEN2_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@dataclass(frozen=True)
class Family:
    architecture: str          # the transformers class
    style: str                 # "sentencepiece" or "bytelevel"
    specials: tuple[str, ...]  # in id order, first
    bos: str | None
    eos: str                   # the tokenizer's eos
    pad: str
    end_of_turn: str
    generation_eos: tuple[str, ...]
    template: str


FAMILIES = {
    # Phi-3 / 3.5 / 4-mini: the tokenizer's eos is <|endoftext|>, the turn ends with <|end|>
    "phi3": Family("Phi3ForCausalLM", "sentencepiece",
                   ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|user|>", "<|end|>"),
                   bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", end_of_turn="<|end|>",
                   generation_eos=("<|endoftext|>", "<|assistant|>", "<|end|>"), template=PHI3_TEMPLATE),
    # Llama-3.1 / 3.2 Instruct
    "llama3": Family("LlamaForCausalLM", "bytelevel",
                     ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eom_id|>", "<|eot_id|>"),
                     bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|end_of_text|>", end_of_turn="<|eot_id|>",
                     generation_eos=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), template=LLAMA3_TEMPLATE),
    # Qwen2 / 2.5 Instruct (ChatML)
    "qwen2": Family("Qwen2ForCausalLM", "bytelevel", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                    bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>",
                    generation_eos=("<|im_end|>", "<|endoftext|>"), template=QWEN2_TEMPLATE),
}

WORDS = ("Solve the following math problem step by step and put your final answer within \\boxed{} . "
         "Is the final answer of this solution correct ? Reply with exactly one word : True or False . "
         "How likely is the answer to be correct ? Reply with one digit from 1 to 5 . "
         "The answer is so we add multiply subtract divide then total each has of and a an it "
         "Natalia sold clips to her friends in April half as many in May how many altogether "
         "Every cat is a mammal . Max is a cat . True or false : Max is not sour . Question Answer").split()


def _corpus(seed: int, lines: int = 3000) -> list[str]:
    """Text that makes the BPE learn whole words, digits, and the judge words after a newline."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 999)))
        out.append(" ".join(words) + rng.choice([" True", " False", "\nTrue", "\nFalse", " \\boxed{%d}" % rng.randint(0, 99)]))
    return out


def build_tokenizer(family: Family, vocab_size: int = 1024, seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if family.style == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = [chr(c) for c in range(32, 127)] + ["\n", "▁"]
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(family.specials),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos, pad_token=family.pad,
        unk_token="<unk>" if "<unk>" in family.specials else None,
        additional_special_tokens=[t for t in family.specials if t not in (family.bos, family.eos, family.pad, "<unk>")])
    fast.chat_template = family.template
    return fast


def _config(family: Family, tok, vocab_size: int, hidden: int, layers: int, heads: int):
    import transformers

    arch = getattr(transformers, family.architecture)
    ids = tok.convert_tokens_to_ids
    return arch.config_class(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=1024,
        bos_token_id=ids(family.bos) if family.bos else None, eos_token_id=ids(family.eos),
        pad_token_id=ids(family.pad), tie_word_embeddings=False), arch


@torch.no_grad()
def _nudge_end_of_turn(model, end_id: int, vocab: int, rate: float, seed: int) -> None:
    """Point the end-of-turn row of lm_head along the mean final hidden state, scaled so that the
    mean probability of ending the turn at a step is about `rate`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (8, 32), generator=g)
    seen = []
    hook = model.lm_head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(input_ids=ids)
    hook.remove()
    h = seen[0].reshape(-1, seen[0].shape[-1])
    direction = h.mean(0) / h.mean(0).norm()
    lo, hi = 0.0, 1000.0
    for _ in range(40):
        scale = (lo + hi) / 2
        model.lm_head.weight[end_id] = scale * direction
        p = model.lm_head(h).float().softmax(-1)[:, end_id].mean().item()
        lo, hi = (scale, hi) if p < rate else (lo, scale)


def build_micro(family: str, path: str | Path, *, vocab_size: int | None = None, hidden: int = 64,
                layers: int = 2, heads: int = 2, end_rate: float = 0.06, seed: int = 0) -> Path:
    """Build and save a micro model of `family` into `path` (head_dim = hidden / heads = 32: what
    vLLM's CPU attention serves). `vocab_size` larger than the tokenizer's pads the model's vocab
    (real models do too), e.g. 32,000 for memory benchmarks."""
    from transformers import GenerationConfig

    from silab.engine.organism import save_quietly

    fam = FAMILIES[family]
    path = Path(path)
    tok = build_tokenizer(fam, seed=seed)
    vocab = max(vocab_size or 0, len(tok))
    config, arch = _config(fam, tok, vocab, hidden, layers, heads)
    torch.manual_seed(seed)
    model = arch(config).eval()
    end_id = tok.convert_tokens_to_ids(fam.end_of_turn)
    _nudge_end_of_turn(model, end_id, len(tok), end_rate, seed)
    ids = tok.convert_tokens_to_ids
    generation = GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id,
                                  eos_token_id=[ids(t) for t in fam.generation_eos])
    model.generation_config = generation
    save_quietly(path, model, tok, generation)
    return path
