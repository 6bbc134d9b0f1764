"""Answer extraction and equivalence for GSM8K, MATH and ProntoQA, on hand-written responses."""
import pytest

from silab.errors import UsageError
from silab.tasks import get_task, task_names
from silab.tasks.gsm8k import canonical_number, clean_solution, gold_from_solution
from silab.tasks.extract import last_boxed
from silab.tasks.math_task import is_equiv, normalize_math, parse_number

gsm8k = get_task("gsm8k")
math = get_task("math")
pronto = get_task("prontoqa")

# ---------------------------------------------------------------------------------------------
# GSM8K: (response, extracted answer)

GSM8K_EXTRACT = [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
     "altogether in April and May.\n#### 72", "72"),
    ("She pays 3 * $4 = $12.\n#### 12", "12"),
    ("#### 1,080", "1080"),
    ("The total cost is $1,080.00.", "1080"),
    ("The answer is: $18", "18"),
    ("The answer is 18 dollars.", "18"),
    ("Final answer: 42", "42"),
    ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.", "18"),
    ("So the final answer is 5 apples and 3 oranges.", "5"),
    ("There are 3 cats. The answer is 7.\nCheck: 1, 2, 3.", "7"),
    ("First guess: the answer is 10. Wait, I made an error. The answer is 12.", "12"),
    ("He ends up 5-3 = 2 points ahead.", "2"),
    ("The temperature drops to −3 degrees.", "-3"),
    ("The change is -8.", "-8"),
    ("The discount is 12.5%.", "12.5"),
    ("Each piece is 2.50 metres long.", "2.5"),
    ("The answer is 18.0", "18"),
    ("The answer is 0.50", "0.5"),
    ("It costs $.75 per pound.", "0.75"),
    ("Therefore, the answer is \\boxed{\\$1,080}.", "1080"),
    ("The answer is \\boxed{\\frac{1}{2}}.", "0.5"),
    ("So he has \\boxed{24} cookies. Earlier he had 30.", "24"),
    ("**Answer:** 3,000 litres", "3000"),
    ("The answer is 1/3", "1/3"),
    ("In total, 1,000,000 people attended.", "1000000"),
    ("The answer is -$5.", "-5"),
    ("She needs 4 more hours.\n\nThe final answer is 4", "4"),
    ("She bought 2 packs for $3 each, so she spent 2 * 3 = 6 dollars", "6"),
    ("Answer = 150 km", "150"),
    ("I don't know.", None),
    ("", None),
    ("#### \nThe answer is 9", "9"),
    ("She answered 5 questions and got 3 wrong, so 2 were right.", "2"),  # "answered" is no marker
]


@pytest.mark.parametrize("text,expected", GSM8K_EXTRACT)
def test_gsm8k_extract(text, expected):
    assert gsm8k.extract_answer(text) == expected


GSM8K_CORRECT = [
    ("The answer is $1,080.", "1080", True),
    ("The answer is 1080", "1,080", True),
    ("#### 72", "72", True),
    ("The answer is 72.0", "72", True),
    ("The answer is 7.2", "72", False),
    ("The answer is 720", "72", False),
    ("The answer is -8", "-8", True),
    ("The answer is 8", "-8", False),
    ("The answer is 2.5", "2.50", True),
    ("The answer is 5/2", "2.5", True),
    ("no answer here", "3", False),
]


@pytest.mark.parametrize("text,gold,ok", GSM8K_CORRECT)
def test_gsm8k_is_correct(text, gold, ok):
    assert gsm8k.is_correct(text, gold) is ok


def test_gsm8k_gold_and_solution():
    answer = "She has 3 * 12 = <<3*12=36>>36 pencils.\n36 - 9 = <<36-9=27>>27 are left.\n#### 27"
    gold = gold_from_solution(answer)
    assert gold == "27"
    solution = clean_solution(answer, gold)
    assert "<<" not in solution and solution.endswith("The final answer is 27.")
    assert gsm8k.is_correct(solution, gold)  # the external data is graded right by its own checker
    assert gold_from_solution("#### 3,000") == "3000"
    assert gold_from_solution("no final line") is None
    assert canonical_number("$2.50") == "2.5" and canonical_number("1/4") == "0.25"
    assert canonical_number("2/6") == "1/3" and canonical_number("cats") is None


# ---------------------------------------------------------------------------------------------
# MATH: extraction

MATH_EXTRACT = [
    ("So the answer is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
    ("We get $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),
    ("First $\\boxed{2}$ was wrong; the answer is $\\boxed{5}$.", "5"),
    ("$\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),
    ("\\fbox{7}", "7"),
    ("so it is \\boxed 5 and we are done", "5"),
    ("The answer is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
    ("Therefore the final answer is 12.", "12"),
    ("The answer is: $x = 4$", "x = 4"),
    ("The sum is $\\boxed{10", None),  # truncated generation: no answer
    ("I could not solve it.", None),
    ("\\boxed{}", None),
]


@pytest.mark.parametrize("text,expected", MATH_EXTRACT)
def test_math_extract(text, expected):
    assert math.extract_answer(text) == expected


# MATH: (prediction, gold, equivalent?)
MATH_EQUIV = [
    ("\\dfrac{3}{4}", "\\frac{3}{4}", True),
    ("\\tfrac34", "\\frac{3}{4}", True),
    ("3/4", "\\frac{3}{4}", True),
    ("0.75", "\\frac{3}{4}", True),
    ("0.33", "\\frac{1}{3}", False),  # decimals only count where exact
    ("\\frac12", "0.5", True),
    ("\\frac{-1}{2}", "-\\frac{1}{2}", True),
    ("-0.5", "-\\frac12", True),
    ("2\\frac{1}{2}", "\\frac{5}{2}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("(3, 0.5)", "\\left(3,\\frac{1}{2}\\right)", True),
    ("(2, 3)", "(3, 2)", False),  # points are ordered
    ("[2, 5)", "[2,5)", True),
    ("x \\in [2, 5)", "[2,5)", True),
    ("x = 5", "5", True),
    ("y=\\frac{1}{2}", "\\frac12", True),
    ("\\theta = \\frac{\\pi}{4}", "\\frac{\\pi}{4}", True),
    ("30^\\circ", "30", True),
    ("30^{\\circ}", "30", True),
    ("10\\text{ cm}^2", "10", True),
    ("5\\text{ inches}", "5", True),
    ("10 inches", "10", True),
    ("\\text{Evelyn}", "Evelyn", True),
    ("\\textbf{(C)}", "\\text{(C)}", True),
    ("\\$18.90", "18.90", True),
    ("18.9", "18.90", True),
    ("50\\%", "50", True),
    ("1{,}000", "1000", True),
    ("1,000", "1000", True),
    ("2 \\sqrt 3", "2\\sqrt{3}", True),
    ("\\sqrt2/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\pi/4", "\\frac{\\pi}{4}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{3}}{2}", False),
    ("3, -3", "-3,3", True),  # "all solutions, separated by commas": any order
    ("3, -3", "3", False),
    (".5", "0.5", True),
    ("5.", "5", True),
    ("\\displaystyle\\frac{1}{4}", "\\frac14", True),
    ("x \\le 3", "x \\leq 3", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("4", "5", False),
    ("\\frac{3}{4}", "\\frac{4}{3}", False),
    ("x^2+1", "x^2 + 1", True),
    ("2x+1", "2x-1", False),
]


@pytest.mark.parametrize("pred,gold,ok", MATH_EQUIV)
def test_math_equiv(pred, gold, ok):
    assert is_equiv(pred, gold) is ok


def test_math_is_correct_on_responses():
    assert math.is_correct("Thus $x = \\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}")
    assert math.is_correct("The angle is $\\boxed{120^\\circ}$.", "120")
    assert not math.is_correct("The angle is $\\boxed{60^\\circ}$.", "120")
    assert not math.is_correct("no box, no answer", "1")


def test_math_helpers():
    assert last_boxed("a \\boxed{\\frac{1}{\\sqrt{2}}} b") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("nothing") is None
    assert normalize_math("\\left(\\frac12\\right)") == "(\\frac{1}{2})"
    assert parse_number("\\frac{6}{8}") == parse_number("0.75") == parse_number("3/4")
    assert parse_number("\\frac{1}{0}") is None and parse_number("x") is None


# ---------------------------------------------------------------------------------------------
# ProntoQA: (response, extracted answer)

PRONTO_EXTRACT = [
    ("Max is a wumpus. Every wumpus is a yumpus. Yumpuses are not sour. So Max is not sour.\n"
     "The answer is False.", "False"),
    ("The answer is True.", "True"),
    ("The answer is: true", "True"),
    ("Answer: FALSE", "False"),
    ("**Answer:** False", "False"),
    ("The answer is **True**.", "True"),
    ("Final answer: B", "False"),
    ("Final Answer: A", "True"),
    ("The answer is (A) True", "True"),
    ("The answer is B) False.", "False"),
    ("The answer is not true.", "False"),
    ("$\\boxed{\\text{False}}$", "False"),
    ("\\boxed{True}", "True"),
    ("\\boxed{A}", "True"),
    ("Therefore, the statement is false.", "False"),
    ("Therefore, the statement \"Max is sour\" is not true.", "False"),
    ("It is not false that Max is dull.", "True"),
    ("So the statement is True", "True"),
    ("Is the following statement true or false? Max is sour.", None),  # the question, echoed
    ("Is the statement true or false? Let me think. It is true.", "True"),
    ("First I thought true, but the rules say otherwise: false.", "False"),
    ("The answer is a bit subtle. Sally is hot, so the statement is true.", "True"),
    ("The answer is False. (Earlier I said True by mistake.)", "False"),
    ("I cannot tell.", None),
    ("", None),
    ("answer: True\nanswer: False", "False"),
    ("The answer is: `True`", "True"),
    ("Answer:\nTrue", "True"),
    ("Sally is hot. True.", "True"),
    ("Conclusion: False", "False"),
]


@pytest.mark.parametrize("text,expected", PRONTO_EXTRACT)
def test_prontoqa_extract(text, expected):
    assert pronto.extract_answer(text) == expected


@pytest.mark.parametrize("text,gold,ok", [
    ("The answer is False.", "False", True),
    ("The answer is False.", "B", True),  # a raw letter gold still works
    ("The answer is True.", "False", False),
    ("The answer is True.", "True", True),
    ("no verdict", "True", False),
])
def test_prontoqa_is_correct(text, gold, ok):
    assert pronto.is_correct(text, gold) is ok


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_names_and_unknown():
    assert {"arith", "gsm8k", "math", "prontoqa"} <= set(task_names())
    for name in ("gsm8k", "math", "prontoqa"):
        task = get_task(name)
        assert task.name == name
        assert callable(task.extract_answer) and callable(task.is_correct) and callable(task.load)
    with pytest.raises(UsageError, match=r"unknown task 'gsm9k' \(known: arith, gsm8k, math, prontoqa\)"):
        get_task("gsm9k")


def test_registry_arith_is_lazy():
    task = get_task("arith")
    assert task.name == "arith" and task.is_correct("85", "85")
