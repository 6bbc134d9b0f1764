"""The text a model is asked: the profile's template around the question, few-shot examples before
it, and the tokenizer's chat template around all of it when the profile asks for chat.

The template is filled with str.replace, not str.format, so braces in it (\\boxed{}) or in a
question stay as they are. With chat = true but a tokenizer without a chat template (or none), the
plain format is used: the same text, blank-line separated.
"""
from __future__ import annotations

from typing import Sequence

from silab.config import TaskConfig
from silab.tasks.base import Item


def fill(template: str, question: str) -> str:
    return template.replace("{question}", question)


def _answer(shot: Item) -> str:
    return shot.solution if shot.solution else shot.gold


def has_chat_template(tokenizer) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def chat_messages(cfg: TaskConfig, item: Item, shots: Sequence[Item] = ()) -> list[dict]:
    """[system?, (user, assistant) per shot, user]."""
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    for shot in shots:
        messages += [{"role": "user", "content": fill(cfg.prompt_template, shot.question)},
                     {"role": "assistant", "content": _answer(shot)}]
    messages.append({"role": "user", "content": fill(cfg.prompt_template, item.question)})
    return messages


def format_prompt(cfg: TaskConfig, item: Item, tokenizer=None, shots: Sequence[Item] = ()) -> str:
    """The prompt for `item`; a response is generated right after it."""
    if cfg.chat and has_chat_template(tokenizer):
        messages = chat_messages(cfg, item, shots)
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            if messages[0]["role"] != "system":
                raise
            # some templates (Gemma, old Mistral) refuse a system turn: fold it into the first user turn
            system, first = messages[0], messages[1]
            merged = {"role": "user", "content": system["content"] + "\n\n" + first["content"]}
            return tokenizer.apply_chat_template([merged] + messages[2:], tokenize=False,
                                                 add_generation_prompt=True)
    parts = [cfg.system_prompt] if cfg.system_prompt else []
    for shot in shots:
        prompt = fill(cfg.prompt_template, shot.question)
        parts.append(prompt + ("" if prompt[-1:].isspace() else " ") + _answer(shot))
    parts.append(fill(cfg.prompt_template, item.question))
    return "\n\n".join(parts)
