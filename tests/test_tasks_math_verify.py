"""MATH equivalence through math-verify (and silab's rules where math-verify misreads), the time
limit on a comparison, and the GSM8K / ProntoQA fixes of issue 11. Full responses, both sides of
the line in every category."""
import threading
import time

import pytest

from silab.tasks import get_task, sympy_check
from silab.tasks.extract import final_boxed
from silab.tasks.math_task import for_sympy, is_equiv

math = get_task("math")
gsm8k = get_task("gsm8k")
pronto = get_task("prontoqa")


def boxed(x):
    return f"Putting it together, the answer is $\\boxed{{{x}}}$."


# (response, gold, right?) grouped by what the old checker got wrong
MATH_CASES = [
    # different variables, different units: no false accepts
    (boxed("x = 3"), "y = 3", False),
    (boxed("x = 3"), "x=3", True),
    (boxed("x = 3"), "3", True),
    ("The length is 10 inches.\nThe answer is 10 inches.", "10\\text{ feet}", False),
    (boxed("10\\text{ inches}"), "10\\text{ feet}", False),
    (boxed("10\\text{ ft}"), "10\\text{ feet}", True),
    (boxed("10"), "10\\text{ feet}", True),
    # commuted sums and products
    (boxed("3+2\\sqrt{2}"), "2\\sqrt{2}+3", True),
    (boxed("1+i"), "i+1", True),
    (boxed("1-i"), "1+i", False),
    (boxed("\\sqrt{2}\\cdot 3"), "3\\sqrt2", True),
    # radical and rational forms
    (boxed("\\frac{1}{\\sqrt2}"), "\\frac{\\sqrt2}{2}", True),
    (boxed("\\sqrt8"), "2\\sqrt2", True),
    (boxed("\\frac34\\pi"), "\\frac{3\\pi}{4}", True),
    (boxed("2\\sqrt3"), "3\\sqrt2", False),
    (boxed("\\frac{\\sqrt3}{3}"), "\\frac{\\sqrt2}{2}", False),
    # powers and scientific notation
    (boxed("2^{10}"), "1024", True),
    (boxed("1.5\\times10^{3}"), "1500", True),
    (boxed("3\\times10^{-2}"), "0.03", True),
    (boxed("10^6"), "1000000", True),
    (boxed("10^7"), "1000000", False),
    # decimals are exact: an approximation is not the answer
    (boxed("0.333333"), "\\frac13", False),
    (boxed("3.1415927"), "\\pi", False),
    (boxed("0.75"), "\\frac34", True),
    # sets and unions in any order, plus-minus, matrices
    (boxed("\\{3,1,2\\}"), "\\{1,2,3\\}", True),
    (boxed("\\{1,2\\}"), "\\{1,2,3\\}", False),
    (boxed("(3,4]\\cup(-\\infty,1)"), "(-\\infty,1)\\cup(3,4]", True),
    (boxed("(3,4)\\cup(-\\infty,1)"), "(-\\infty,1)\\cup(3,4]", False),
    (boxed("\\pm 1"), "-1, 1", True),
    (boxed("-1, 1"), "\\pm1", True),
    (boxed("1"), "\\pm 1", False),
    (boxed("\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}"), "\\begin{pmatrix} \\frac12 \\\\ 2 \\end{pmatrix}", True),
    (boxed("\\begin{pmatrix} 2 \\\\ 0.5 \\end{pmatrix}"), "\\begin{pmatrix} \\frac12 \\\\ 2 \\end{pmatrix}", False),
    (boxed("(2,3)"), "(3,2)", False),
    # "or" answers and answers split over two boxes
    (boxed("x=3 \\text{ or } x=5"), "3, 5", True),
    (boxed("x=3"), "3, 5", False),
    ("So $x=\\boxed{3}$ or $x=\\boxed{5}$.", "3, 5", True),
    ("The roots are $\\boxed{3}$ and $\\boxed{5}$.", "5, 3", True),
    ("First I got $\\boxed{3}$, which is wrong; the answer is $\\boxed{5}$.", "3, 5", False),
    # text answers: case, letter choices
    (boxed("\\text{monday}"), "\\text{Monday}", True),
    (boxed("\\text{Tuesday}"), "\\text{Monday}", False),
    (boxed("C"), "\\text{(C)}", True),
    (boxed("D"), "\\text{(C)}", False),
    # the unboxed fallback stops at the clause
    ("Hence the answer is 7, since 3 + 4 = 7.", "7", True),
    ("Hence the answer is 8, because 3 + 5 = 8.", "7", False),
    # where silab's own rules stay: golds and forms math-verify misreads
    (boxed("\\frac{\\pi}{2}"), "\\frac\\pi2", True),
    (boxed("\\frac{\\pi}{3}"), "\\frac\\pi2", False),
    (boxed("1000"), "1\\,000", True),
    (boxed("0"), "1\\,000", False),
    (boxed("5."), "5", True),
    (boxed("6."), "5", False),
    (boxed("0.12"), "12\\%", False),  # a percent question is answered in percent
    (boxed("12\\%"), "12", True),
]


@pytest.mark.parametrize("text,gold,ok", MATH_CASES)
def test_math_cases(text, gold, ok):
    assert math.is_correct(text, gold) is ok


def test_final_boxed_joins_only_connected_boxes():
    assert final_boxed("$x=\\boxed{3}$ or $x=\\boxed{5}$") == "3, 5"
    assert final_boxed("\\boxed{5}\n\n\\boxed{5}") == "5"  # a repeated box is one answer
    assert final_boxed("\\boxed{2}\n\n\\boxed{5}") == "5"  # nothing joins them
    assert final_boxed("no box") is None


def test_for_sympy_mends():
    assert for_sympy("\\frac\\pi2") == "\\frac{\\pi}{2}"
    assert for_sympy("1\\,000") == "1000" and for_sympy("5.") == "5" and for_sympy("1,000") == "1000"
    assert for_sympy("-0.25") == "-\\frac{25}{100}"


def test_cache_counts_hits():
    before = sympy_check.STATS.cache_hits
    assert is_equiv("\\sqrt{18}", "3\\sqrt2") and is_equiv("\\sqrt{18}", "3\\sqrt2")
    assert sympy_check.STATS.cache_hits == before + 1


def test_power_tower_returns_within_the_limit(monkeypatch):
    monkeypatch.setattr(sympy_check, "TIME_LIMIT_S", 1.0)
    assert is_equiv("\\sqrt{4}", "2")  # the worker is up before the clock starts
    timeouts = math.check_timeouts()
    start = time.monotonic()
    assert not math.is_correct("\\boxed{9^{9^{9^{9}}}}", "\\sqrt{7}")
    assert time.monotonic() - start < 1.0 + sympy_check._GRACE_S
    assert math.check_timeouts() == timeouts + 1
    assert not math.is_correct("\\boxed{9^{9^{9^{9}}}}", "\\sqrt{7}")  # cached, still counted
    assert math.check_timeouts() == timeouts + 2


def test_stuck_worker_is_killed_and_replaced(monkeypatch):
    # a grace below zero makes the parent give up before the child's own timer: the C-level-hang path
    monkeypatch.setattr(sympy_check, "_GRACE_S", -0.8)
    restarts = sympy_check.STATS.restarts
    start = time.monotonic()
    assert sympy_check.equivalent("(10^{10})!", "\\sqrt{3}", limit=1.0) is None
    assert time.monotonic() - start < 1.0
    assert sympy_check.STATS.restarts == restarts + 1
    monkeypatch.setattr(sympy_check, "_GRACE_S", 2.0)
    assert sympy_check.equivalent("\\sqrt{8}", "2\\sqrt{2}") is True  # a fresh worker answers


def test_checks_from_a_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(math.is_correct(boxed("\\sqrt{12}"), "2\\sqrt3")))
    worker.start()
    worker.join(timeout=60)
    assert results == [True]


def test_in_process_fallback_when_no_worker(monkeypatch):
    monkeypatch.setattr(sympy_check, "_no_worker", True)
    assert sympy_check.equivalent("\\frac{1}{\\sqrt2}", "\\frac{\\sqrt2}{2}") is True
    assert sympy_check.equivalent("9^{9^{9^{9}}}", "\\sqrt{5}", limit=1.0) is None  # main thread: SIGALRM


# ---------------------------------------------------------------------------------------------
# GSM8K


@pytest.mark.parametrize("text,expected", [
    ("The answer is 1 000.", "1000"),
    ("#### 1 000 000", "1000000"),
    ("It costs $1\\,200.", "1200"),
    ("She ran 2 100-metre races.", "100"),  # a hyphenated word is not a thousands group
    ("#### 72\n\nQuestion: Tom has 5 apples and eats 2. How many are left?\nAnswer: #### 3", "72"),
    ("#### 72\n#### 5", "72"),
    ("She has 72 clips.<|end|><|user|>What is 3+4? The answer is 7.", "72"),
])
def test_gsm8k_fixes(text, expected):
    assert gsm8k.extract_answer(text) == expected


# ---------------------------------------------------------------------------------------------
# ProntoQA: the rule for "it is [not] true/false that S"


@pytest.mark.parametrize("text,expected", [
    ("Max is a wumpus, and wumpuses are sour. It is false that Max is not sour.", "True"),
    ("It is not true that Max is not sour.", "True"),
    ("It is false that Max isn't sour.", "True"),
    ("It is true that Max is not sour.", "True"),  # the restated (negated) question, affirmed
    ("It is false that Max is sour.", "False"),
    ("It is true that Max is sour.", "True"),
])
def test_prontoqa_claims(text, expected):
    assert pronto.extract_answer(text) == expected
