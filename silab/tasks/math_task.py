"""MATH (Hendrycks et al. 2021): competition problems whose answer is the last \\boxed{...}.

Named math_task.py, not math.py: a module called `math` here would shadow the standard library for
any script run from this folder (and `random` imports `math`).

Hub default: EleutherAI/hendrycks_math, its seven subject configs concatenated (the original
hendrycks/competition_math is no longer on the hub); `task.subset` may name one subject or a
comma-separated list. Columns: problem, solution (level and type are kept out of the Item). A row
with an `answer` column (MATH-500 style files) uses it as the gold; otherwise the gold is the
solution's last \\boxed{}.

The answer is the last \\boxed{} of the model's own turn (joined with the boxes just before it that
only "and"/"or"/a comma separate: `x=\\boxed{3}` or `x=\\boxed{5}`), else a final "the answer is X"
(cut at the clause: "7, since 3 + 4 = 7" -> 7).

Equivalence, cheapest first: different leading variables (x = 3 vs y = 3) or units (inches vs feet)
are wrong; silab's normalisation (Hendrycks' rules plus \\left/\\right, ^\\circ, \\text{} units, a leading
`x =`, a/b) then decides equal strings, exact rationals (0.5 == \\frac12, 0.33 != \\frac13) and lists;
what is left goes to math-verify (sympy), time-limited in a worker (see sympy_check), after mending
what it misreads (\\frac\\pi2, 1\\,000, "5."). Verdicts are cached per (answer, gold) pair.
"""
from __future__ import annotations

import re
from fractions import Fraction

from silab.config import TaskConfig
from silab.tasks import sympy_check
from silab.tasks.base import Item
from silab.tasks.extract import answer_after_marker, brace_group, final_boxed, last_boxed, own_turn
from silab.tasks.loading import field_text, load_items

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
            "number_theory", "prealgebra", "precalculus")

# ---------------------------------------------------------------------------------------------
# normalisation and equivalence


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}, recursively."""
    out, i = [], 0
    while True:
        j = s.find("\\frac", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j] + "\\frac")
        k = j + len("\\frac")
        for _ in range(2):
            if k >= len(s):
                out.append(s[k:])
                return "".join(out)
            if s[k] == "{":
                end = brace_group(s, k)
                if end is None:
                    out.append(s[k:])
                    return "".join(out)
                out.append("{" + _fix_fracs(s[k + 1:end - 1]) + "}")
                k = end
            elif s[k] == "\\":  # \frac\pi2
                m = re.match(r"\\[a-zA-Z]+", s[k:])
                tok = m.group(0) if m else s[k:k + 2]
                out.append("{" + tok + "}")
                k += len(tok)
            else:
                out.append("{" + s[k] + "}")
                k += 1
        i = k


def _strip_outer_braces(s: str) -> str:
    while s.startswith("{") and brace_group(s, 0) == len(s):
        s = s[1:-1]
    return s


_UNIT = re.compile(r"\s*\\(?:text|textrm|mbox|mathrm)\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?\d\}?)?\s*$")
_WRAP = re.compile(r"\\(?:text|textrm|textbf|mbox|mathrm|mathbf|textit)\{([^{}]*)\}")
_ATOM = r"(?:\d+(?:\.\d+)?|\\sqrt\{[^{}]*\}|\\pi|[a-zA-Z])+"


def normalize_math(answer: str) -> str:
    """A canonical string for a MATH answer; equal strings mean equal answers."""
    s = answer.strip()
    s = s.replace("\n", " ").replace("{,}", ",")
    s = re.sub(r"(?<!\\)\\[,;:> !]|~|\\q?quad(?![a-zA-Z])", " ", s)  # spacing, not \\ (a new row)
    s = s.replace("\\displaystyle", "")
    s = re.sub(r"\\(?:left|right)\.", "", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree", "", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    # units: a trailing \text{ cm}^2 after something, then unwrap what \text{} is left
    stripped = _UNIT.sub("", s)
    if stripped.strip():
        s = stripped
    while _WRAP.search(s):
        s = _WRAP.sub(r"\1", s)
    s = re.sub(r"^(-?[\d.,]+)\s+(?:[a-zA-Z]{2,}\s*)+$", r"\1", s.strip())  # "10 inches"
    s = s.replace(" ", "")
    s = re.sub(r"\\le(?![a-zA-Z])", r"\\leq", s)
    s = re.sub(r"\\ge(?![a-zA-Z])", r"\\geq", s)
    # a leading "x =" (one variable, one "=") or "x \in"
    if s.count("=") == 1:
        s = re.sub(r"^(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?=", "", s)
    s = re.sub(r"^[a-zA-Z]\\in", "", s)
    s = re.sub(r"\\sqrt([0-9a-zA-Z])", r"\\sqrt{\1}", s)
    s = _fix_fracs(s)
    s = _strip_outer_braces(s)
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    m = re.fullmatch(rf"(-?)({_ATOM})/({_ATOM})", s)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    return s


def parse_number(s: str) -> Fraction | None:
    """Exact value of a plain number: 12, -3.50, 1,000, 3/4, \\frac{3}{4}, -\\frac{3}{4}, 2\\frac{1}{2}."""
    s = s.strip().replace(" ", "").replace("−", "-")
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", s):
        return Fraction(s.rstrip(".") if s.endswith(".") else s)
    m = re.fullmatch(r"([-+]?)(\d+)/(\d+)", s)
    if m and int(m.group(3)) != 0:
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) == "-" else 1)
    m = re.fullmatch(r"(-?)(\d*)\\frac\{(-?\d+)\}\{(-?\d+)\}", _fix_fracs(s))
    if m and int(m.group(4)) != 0:
        value = Fraction(int(m.group(3)), int(m.group(4)))
        if m.group(2):  # a mixed number: 2\frac{1}{2} = 5/2
            if value < 0:
                return None
            value += int(m.group(2))
        return -value if m.group(1) else value
    return None


def _split_top(s: str) -> list[str]:
    """Split on commas that are outside any bracket."""
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _same(a: str, b: str) -> bool:
    """Equality of two normalised answers: as strings, as numbers, then part by part."""
    if a == b:
        return True
    fa, fb = parse_number(a), parse_number(b)
    if fa is not None and fb is not None:
        return fa == fb
    # tuples and intervals: same brackets, same number of parts, each part equal
    if len(a) > 2 and len(b) > 2 and a[0] in "([" and b[0] == a[0] and a[-1] in ")]" and b[-1] == a[-1]:
        pa, pb = _split_top(a[1:-1]), _split_top(b[1:-1])
        if len(pa) == len(pb) > 1:
            return all(_same(x, y) for x, y in zip(pa, pb))
        return False
    # bare lists ("all solutions, separated by commas"): the same elements in any order
    pa, pb = _split_top(a), _split_top(b)
    if len(pa) == len(pb) > 1:
        rest = list(pb)
        for x in pa:
            hit = next((y for y in rest if _same(x, y)), None)
            if hit is None:
                return False
            rest.remove(hit)
        return True
    return False


_LEAD_VAR = re.compile(r"^\s*((?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?)\s*=")
_UNIT_ALIAS = {"feet": "foot", "ft": "foot", "in": "inch", "inche": "inch", "cm": "centimeter", "mm": "millimeter",
               "km": "kilometer", "centimetre": "centimeter", "metre": "meter", "kilometre": "kilometer",
               "hr": "hour", "min": "minute", "sec": "second", "lb": "pound", "oz": "ounce", "yd": "yard",
               "mi": "mile", "kg": "kilogram", "degree": "degree", "cent": "cent", "dollar": "dollar"}
_NOT_UNITS = {"and", "or", "the", "square", "sq", "cubic", "unit", "only", "of", "per", "total"}


def _lead_var(answer: str) -> str | None:
    """"x = 3" -> "x" (one "=" only); None otherwise."""
    s = answer.replace("$", "")
    m = _LEAD_VAR.match(s)
    return m.group(1).replace("{", "").replace("}", "") if m and s.count("=") == 1 else None


def _units(answer: str) -> set[str]:
    """Unit words after the last digit: "10\\text{ inches}" -> {"inch"}; empty when there are none."""
    s = re.sub(r"\^\s*\{?\d\}?\s*\.?$", "", answer.strip())  # cm^2
    m = re.search(r"\d([^\d]*)$", s)
    if not m:
        return set()
    tail = re.sub(r"\\(?:text|textrm|mbox|mathrm)\{([^{}]*)\}", r"\1", m.group(1))
    if "\\" in tail or not re.fullmatch(r"[\s}{.,a-zA-Z]*", tail):
        return set()  # math, not a unit (5\\pi, 2x + 1)
    words = {re.sub(r"(?<=[a-z]{2})s$", "", w.lower()) for w in re.findall(r"[a-zA-Z]{2,}", tail)}
    return {_UNIT_ALIAS.get(w, w) for w in words} - _NOT_UNITS


def _conflict(pred: str, gold: str) -> bool:
    """Different variables ("x = 3" vs "y = 3") or different units ("10 inches" vs "10 feet")."""
    vp, vg = _lead_var(pred), _lead_var(gold)
    if vp and vg and vp != vg:
        return True
    up, ug = _units(pred), _units(gold)
    return bool(up and ug and up != ug)


def for_sympy(answer: str) -> str:
    """Mend what math-verify misreads: \\frac\\pi2, 1\\,000, a trailing "5.", and plain decimals, made exact
    fractions so that 3.1415927 is not taken for \\pi nor 0.333333 for \\frac13 (it rounds to 6 places)."""
    s = answer.strip().replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _fix_fracs(s)
    s = re.sub(r"(?<=\d)(?:\\[,;:! ]|\{,\}|~)(?=\d{3}(?!\d))", "", s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    m = re.fullmatch(r"(-?)(\d*)\.(\d+)", s)
    if m:
        s = f"{m.group(1)}\\frac{{{int(m.group(2) + m.group(3))}}}{{{10 ** len(m.group(3))}}}"
    return s


def decide(pred: str, gold: str) -> bool | None:
    """Cheap rules first, math-verify (time-limited) only when they cannot tell; None = timed out."""
    if _conflict(pred, gold):
        return False
    a, b = normalize_math(pred), normalize_math(gold)
    if _same(a, b):
        return True
    if parse_number(a) is not None and parse_number(b) is not None:
        return False  # two plain numbers, exactly different
    return sympy_check.equivalent(for_sympy(pred), for_sympy(gold))


_CACHE: dict[tuple[str, str], bool | None] = {}
_CACHE_SIZE = 200_000


def is_equiv(pred: str, gold: str) -> bool:
    """Whether a predicted MATH answer is the gold one (a timed-out comparison is wrong, and counted)."""
    stats = sympy_check.STATS
    stats.checks += 1
    key = (pred, gold)
    if key in _CACHE:
        stats.cache_hits += 1
        verdict = _CACHE[key]
    else:
        verdict = decide(pred, gold)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = verdict
    if verdict is None:
        stats.timeouts += 1
    return verdict is True


# ---------------------------------------------------------------------------------------------


class MathTask:
    """Answers are read from the last \\boxed{} (else a final "the answer is ..." statement)."""
    name = "math"
    source = "EleutherAI/hendrycks_math"
    subsets = SUBJECTS

    def extract_answer(self, text: str) -> str | None:
        text = own_turn(text)
        ans = final_boxed(text)
        if ans is None:
            ans = answer_after_marker(text)
        return ans.strip().strip("$").strip() or None if ans is not None else None

    def is_correct(self, text: str, gold: str) -> bool:
        pred = self.extract_answer(text)
        return pred is not None and is_equiv(pred, gold)

    def check_timeouts(self) -> int:
        """Comparisons judged wrong for running out of time, in this process so far (a counter)."""
        return sympy_check.STATS.timeouts

    def parse_row(self, row: dict, fallback_id: str) -> Item | None:
        question = field_text(row, "problem", "question")
        solution = field_text(row, "solution")
        gold = field_text(row, "answer") or (last_boxed(solution) if solution else None)
        if not question or not gold:
            return None
        if solution is None:
            solution = f"The final answer is $\\boxed{{{gold}}}$."
        return Item(id=field_text(row, "unique_id", "id") or fallback_id,
                    question=question, gold=gold, solution=solution)

    def load(self, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
        return load_items(self, cfg, split)
