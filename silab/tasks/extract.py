"""Pulling an answer out of a model's text: the model's own turn (cut where it starts inventing the
next one), the last \\boxed{...} (joined with the boxes that only "and"/"or"/a comma separate from it),
or a final "the answer is X" cut at its clause. Shared by the MATH, GSM8K and ProntoQA tasks."""
from __future__ import annotations

import re


def brace_group(text: str, i: int) -> int | None:
    """Index just past the brace group opening at text[i] == "{", or None if it never closes."""
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2  # \{ and \} are literal braces, not grouping
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


# where a model that runs on starts a turn of its own invention: a chat-turn token, or a new "Question:" line
_NEW_TURN = re.compile(r"<\|(?:end|user|eot_id|start_header_id|im_end|im_start|endoftext)\|>|<end_of_turn>|</s>"
                       r"|\n\s*(?:#+\s*)?(?:Question|Problem|Q|User|Human)\s*\d*\s*:", re.IGNORECASE)


def own_turn(text: str) -> str:
    """The response up to where it starts another turn (a second question and its answer are not ours)."""
    m = _NEW_TURN.search(text)
    return text[:m.start()] if m else text


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, content) of every \\boxed{...} / \\fbox{...} / `\\boxed 5`; content None if unclosed."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            end = brace_group(text, i)
            out.append((m.start(), end, text[i + 1:end - 1]) if end else (m.start(), len(text), None))
        else:
            word = re.match(r"[^\s$]*", text[i:]).group(0)
            out.append((m.start(), i + len(word), word or None))
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox, or `\\boxed 5`); None if absent or unclosed."""
    boxes = _boxes(text)
    content = boxes[-1][2] if boxes else None
    return content.strip() or None if content is not None else None


# what may stand between two boxes that hold one answer: "$x=\boxed{3}$ or $x=\boxed{5}$"
_BETWEEN_BOXES = re.compile(r"[\s$,;]*(?:\\text\{\s*(?:and|or)\s*\}|and|or)?[\s$,]*"
                            r"(?:(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*=)?[\s$]*")


def final_boxed(text: str) -> str | None:
    """The last box, joined (", ") with the boxes before it that only a comma, "and"/"or" or `x =` separate."""
    boxes = _boxes(text)
    if not boxes or boxes[-1][2] is None:
        return None
    parts = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        between = text[box[1]:parts[0][0]] if box[1] <= parts[0][0] else ""
        if box[2] is None or not _BETWEEN_BOXES.fullmatch(between) or not re.search(r"and|or|[,;=]", between):
            break
        parts.insert(0, box)
    contents = list(dict.fromkeys(c.strip() for _, _, c in parts if c.strip()))  # a repeated box is one answer
    return ", ".join(contents) or None


_MARKER = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
# where an unboxed answer stops: "the answer is 7, since 3 + 4 = 7" -> "7"
_CLAUSE_END = re.compile(r"\n|\.\s|\.$|;\s|,?\s+(?:since|because|as|so|which|where|given|thus|hence|"
                         r"therefore|for|when|if)\b", re.IGNORECASE)


def answer_after_marker(text: str) -> str | None:
    """`... the final answer is $X$.` / `Final Answer: X` -> X (the last such statement)."""
    matches = list(_MARKER.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():].lstrip("* ")
    if rest.startswith("$"):
        m = re.match(r"\$+([^$]+)\$+", rest)
        ans = m.group(1) if m else rest.strip("$")
    else:
        ans = _CLAUSE_END.split(rest, maxsplit=1)[0]
    ans = ans.strip().strip("*").rstrip(".").strip()
    return ans or None
