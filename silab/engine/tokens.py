"""Token bookkeeping that both backends share, so a sample means the same thing on either.

Real chat models end a turn with their own token (`<|end|>` for Phi-3/3.5/4-mini, `<|eot_id|>` for
Llama-3, `<|im_end|>` for Qwen2), listed in the generation config's eos ids rather than as the
tokenizer's eos. A sample ends at the first of all those ids; the training target of a pick is its
sampled ids (end of turn included), never re-encoded text; and a judge's answer word is read as the
sum over every token the model could start it with in that position (`True`, `▁True`, ` True`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from silab.errors import UsageError

PROBE_USER, PROBE_REPLY = "silab-probe-question", "silab-probe-answer"  # found again in the rendering


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Prompts are encoded as text, special-token markers included (a chat template's rendering
    holds them), with no extra BOS/EOS: the template decides those."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def end_of_turn_id(tokenizer) -> int:
    """The id that closes an assistant turn in the tokenizer's chat template (the tokenizer's eos
    when there is no template, or the template closes turns with plain text)."""
    if has_chat_template(tokenizer):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROBE_USER}, {"role": "assistant", "content": PROBE_REPLY}],
            tokenize=False, add_generation_prompt=False)
        tail = rendered[rendered.rfind(PROBE_REPLY) + len(PROBE_REPLY):]
        ids = encode_prompt(tokenizer, tail)
        special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        if ids and ids[0] in special:
            return ids[0]
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no eos token and its chat template no end-of-turn token: "
                         "silab cannot tell where an answer ends")
    return tokenizer.eos_token_id


def generation_eos_ids(model_path: str) -> list[int]:
    """The eos ids of the model's generation_config.json (an int or a list), if it has one."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        return []
    eos = config.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def stop_token_ids(tokenizer, model_path: str) -> list[int]:
    """Where a sample ends: the union of the generation config's eos ids, the tokenizer's eos and
    the chat template's end-of-turn token."""
    ids = set(generation_eos_ids(model_path)) | {end_of_turn_id(tokenizer)}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def cut_at_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """(tokens up to and including the first stop id, whether one was found)."""
    stops = set(stop_ids)
    for i, t in enumerate(tokens):
        if t in stops:
            return list(tokens[:i + 1]), True
    return list(tokens), False


def decode_responses(tokenizer, token_lists: Sequence[Sequence[int]], stop_ids: Sequence[int]) -> list[str]:
    """The texts the checker and the judge read: each sample's tokens without its stop id and
    without special tokens, decoded in one batch."""
    stops = set(stop_ids)
    bodies = [list(t[:-1]) if t and t[-1] in stops else list(t) for t in token_lists]
    return tokenizer.batch_decode(bodies, skip_special_tokens=True) if bodies else []


@lru_cache(maxsize=8)
def _vocab_strings(tokenizer) -> tuple[str, ...]:
    """Every id's text, decoded alone (the tokenizer's decoder strips a sentencepiece `▁`)."""
    size = len(tokenizer)
    return tuple(tokenizer.batch_decode([[i] for i in range(size)]))


def word_variants(tokenizer, word: str) -> list[int]:
    """Every token the model can start `word` with: the ids whose text, stripped of leading white
    space (`▁`, `Ġ`, ' ', newline), is the word itself; when no single token spells the whole word,
    the first token of its encodings alone and after a space. Case-sensitive."""
    target = word.strip()
    if not target:
        raise UsageError(f"judge answer word {word!r} is empty")
    special = set(tokenizer.all_special_ids)
    ids = [i for i, text in enumerate(_vocab_strings(tokenizer)) if text.strip() == target and i not in special]
    if not ids:
        for text in (target, " " + target):
            encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
            if encoded:
                ids.append(encoded[0])
    return sorted(set(ids))


def answer_token_ids(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Per judge answer word, its first-token variants; the words must not share any."""
    groups = [word_variants(tokenizer, w) for w in words]
    seen: dict[int, str] = {}
    for word, group in zip(words, groups):
        for i in group:
            if i in seen:
                raise UsageError(f"judge answer words {seen[i]!r} and {word!r} both start with token "
                                 f"{tokenizer.convert_ids_to_tokens(i)!r}: verify's answer tokens must differ "
                                 "in their first token")
            seen[i] = word
    return groups


def continuation_ids(tokenizer, prompt_text: str, text: str, end_id: int) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) for training on text that was not sampled (external data, judge
    rehearsal): the text tokenized as it follows the prompt, closed by the model's end of turn."""
    prompt = encode_prompt(tokenizer, prompt_text)
    whole = encode_prompt(tokenizer, prompt_text + text)
    target = whole[len(prompt):] if whole[:len(prompt)] == prompt else encode_prompt(tokenizer, text)
    return prompt, target + [end_id]


def chat_judge_template(tokenizer, question: str) -> str:
    """A judge template built from the tokenizer's own chat template: the answer's turn closed as
    the template closes it, the judge question as a new user turn, the reply opened. `{prompt}`
    (the chat-formatted question, ending with the opened assistant turn) and `{response}` are
    filled by the loop."""
    messages = [{"role": "user", "content": PROBE_USER}, {"role": "assistant", "content": PROBE_REPLY},
                {"role": "user", "content": question}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "{prompt}{response}" + rendered[rendered.rfind(PROBE_REPLY) + len(PROBE_REPLY):]
