"""Loading through `datasets` from local jsonl/parquet/csv files, skipped rows, the seeded disjoint
split, and the one-line UsageErrors for bad input. The hub path is checked with a stand-in for
datasets.load_dataset (no network here)."""
import json
from pathlib import Path

import pytest

from silab.config import TaskConfig
from silab.errors import UsageError
from silab.tasks import get_task, split_items
from silab.tasks.loading import question_key

DATA = Path(__file__).parent / "data" / "tasks"


def cfg(name, train, test, **kw):
    files = lambda f: [str(p) for p in (f if isinstance(f, list) else [f])]  # noqa: E731
    return TaskConfig(name=name, train_files=files(train), test_files=files(test), **kw)


def write_parquet(rows, path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def assert_disjoint(s):
    groups = [s.prompts, s.external, s.shots, s.test]
    ids = [it.id for g in groups for it in g]
    questions = [question_key(it.question) for g in groups for it in g]
    assert len(ids) == len(set(ids))
    assert len(questions) == len(set(questions))


# ---------------------------------------------------------------------------------------------
# GSM8K: jsonl train, csv test


def test_gsm8k_jsonl_and_csv():
    task = get_task("gsm8k")
    c = cfg("gsm8k", DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.csv")
    train, skipped = task.load(c, "train")
    assert skipped == 2  # no final number; empty question
    assert len(train) == 12
    by_id = {it.id: it for it in train}
    assert by_id["g9"].gold == "3000"  # "#### 3,000"
    assert by_id["g13"].gold == "2.5" and by_id["g11"].gold == "-8"
    assert "<<" not in by_id["g1"].solution and by_id["g1"].solution.endswith("The final answer is 27.")
    test, skipped = task.load(c, "test")
    assert skipped == 1 and len(test) == 5  # a csv row with an empty answer
    assert [it.id for it in test] == [f"test-{i}" for i in range(5)]  # no id column: row numbers
    assert {it.gold for it in test} == {"18", "3000", "12", "180", "4.5"}
    for it in train + test:  # every gold is graded right against its own solution
        assert task.is_correct(it.solution, it.gold)


def test_gsm8k_split_is_disjoint_seeded_and_counted():
    c = cfg("gsm8k", DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.csv",
            n_prompts=5, n_external=4, n_test=5, few_shot=2)
    s = split_items("gsm8k", c, seed=0)
    assert (len(s.prompts), len(s.external), len(s.test), len(s.shots)) == (5, 4, 5, 2)
    assert s.skipped == 3
    # the train copy of the test question "Ben has 3 boxes..." (other case and spacing) is dropped
    assert s.duplicates == 1
    assert "g14" not in {it.id for it in s.prompts + s.external + s.shots}
    assert_disjoint(s)
    assert all(it.solution for it in s.shots)
    again = split_items(get_task("gsm8k"), c, seed=0)
    assert again == s
    other = [split_items("gsm8k", c, seed=k) for k in (1, 2, 3)]
    assert any([it.id for it in o.prompts] != [it.id for it in s.prompts] for o in other)


def test_too_few_items_is_a_usage_error():
    c = cfg("gsm8k", DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.csv", n_prompts=10, n_external=5, n_test=5)
    with pytest.raises(UsageError, match=r"gsm8k_train\.jsonl: only 11 usable train items, need "
                                         r"task\.n_prompts 10 \+ task\.n_external 5"):
        split_items("gsm8k", c, seed=0)
    c = cfg("gsm8k", DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.csv", n_prompts=2, n_test=6)
    with pytest.raises(UsageError, match=r"gsm8k_test\.csv: only 5 usable test items but task\.n_test = 6 "
                                         r"\(1 rows without a usable answer"):
        split_items("gsm8k", c, seed=0)
    c = cfg("gsm8k", DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.csv", n_prompts=9, n_test=5, few_shot=3)
    with pytest.raises(UsageError, match=r"task\.few_shot 3"):
        split_items("gsm8k", c, seed=0)


# ---------------------------------------------------------------------------------------------
# MATH: jsonl and parquet train, csv test


def test_math_jsonl_parquet_csv(tmp_path):
    task = get_task("math")
    rows = [json.loads(line) for line in (DATA / "math_train.jsonl").read_text().splitlines()]
    parquet = write_parquet(rows, tmp_path / "math_train.parquet")
    for train_file in (DATA / "math_train.jsonl", parquet):
        c = cfg("math", train_file, DATA / "math_test.csv")
        train, skipped = task.load(c, "train")
        assert skipped == 1 and len(train) == 6  # one solution without a \boxed{}
        assert [it.gold for it in train] == ["\\frac{3}{4}", "4", "(3, -1)", "120^\\circ", "5\\sqrt{2}", "6"]
    test, skipped = task.load(c, "test")
    assert skipped == 0
    assert [it.gold for it in test] == ["\\dfrac{4}{9}", "3, -3", "20\\text{ cm}^2"]
    for it in train + test:
        assert task.is_correct(it.solution, it.gold)
    assert task.is_correct("so $\\boxed{\\frac49}$", test[0].gold)
    assert task.is_correct("$x = \\boxed{-3, 3}$", test[1].gold)
    assert task.is_correct("The area is $\\boxed{20}$ square centimetres.", test[2].gold)


def test_math_answer_column_and_several_files(tmp_path):
    rows = [{"problem": "What is $1+1$?", "solution": "It is 2.", "answer": "2", "unique_id": "a/1"},
            {"problem": "What is $2+2$?", "answer": "4", "unique_id": "a/2"},
            {"problem": "No answer at all."}]
    p1 = tmp_path / "one.jsonl"
    p1.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p2 = write_parquet([{"problem": "What is $3+3$?", "solution": "$\\boxed{6}$"}], tmp_path / "two.parquet")
    items, skipped = get_task("math").load(cfg("math", [p1, p2], p1), "train")
    assert skipped == 1
    assert [(it.id, it.gold) for it in items] == [("a/1", "2"), ("a/2", "4"), ("train-3", "6")]
    assert items[1].solution == "The final answer is $\\boxed{4}$."  # answer only: a boxed stand-in


# ---------------------------------------------------------------------------------------------
# ProntoQA: one source for both splits (the hub release has only "validation")


def test_prontoqa_same_source_both_splits(tmp_path):
    task = get_task("prontoqa")
    c = cfg("prontoqa", DATA / "prontoqa.jsonl", DATA / "prontoqa.jsonl", n_prompts=4, n_external=1, n_test=3)
    items, skipped = task.load(c, "train")
    assert skipped == 1 and len(items) == 8  # answer "C" is not a truth value
    first = items[0]
    assert first.id == "ProntoQA_1" and first.gold == "False"  # answer "B" with options "B) False"
    assert first.question.startswith("Wumpuses are dull.") and first.question.endswith("Max is sour.")
    assert first.solution == "The answer is False."
    s = split_items(task, c, seed=3)
    assert len(s.test) == 3 and len(s.prompts) == 4 and len(s.external) == 1
    assert s.skipped == 2 and s.duplicates == 3  # the 3 test items are dropped from the train side
    assert_disjoint(s)


def test_prontoqa_csv_and_other_answer_forms(tmp_path):
    import csv
    path = tmp_path / "pq.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "context", "question", "options", "answer", "explanation"])
        w.writerow(["p1", "Cats are cute. Tom is a cat.", "Is the following statement true or false? Tom is cute.",
                    "['A) True', 'B) False']", "A", "Tom is a cat. Cats are cute. So Tom is cute."])
        w.writerow(["p2", "", "Is Tom sad?", "", "False", ""])
        w.writerow(["p3", "Dogs bark.", "Is Rex a dog?", "", "maybe", ""])
        w.writerow(["p4", "Options reversed.", "Is it so?", "['A) False', 'B) True']", "B", ""])
        w.writerow(["p5", "No options given.", "Is it so?", "", "B", ""])  # letters alone: B = False
    items, skipped = get_task("prontoqa").load(cfg("prontoqa", path, path), "test")
    assert skipped == 1
    assert [(it.id, it.gold) for it in items] == [("p1", "True"), ("p2", "False"), ("p4", "True"), ("p5", "False")]
    assert items[0].solution == "Tom is a cat. Cats are cute. So Tom is cute.\nThe answer is True."
    assert items[1].question == "Is Tom sad?"


def test_prontoqa_bool_and_chain_of_thought(tmp_path):
    path = tmp_path / "pq.jsonl"
    path.write_text(json.dumps({"question": "Q1", "query": "x", "answer": True,
                                "chain_of_thought": ["A is B.", "B is C."]}) + "\n")
    (item,), skipped = get_task("prontoqa").load(cfg("prontoqa", path, path), "train")
    assert skipped == 0 and item.gold == "True"
    assert item.solution == "A is B. B is C.\nThe answer is True."


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_files_are_usage_errors(tmp_path):
    task = get_task("gsm8k")
    test = DATA / "gsm8k_test.csv"
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UsageError, match=r"nope\.jsonl: file not found"):
        task.load(cfg("gsm8k", missing, test), "train")
    txt = tmp_path / "data.txt"
    txt.write_text("hello")
    with pytest.raises(UsageError, match=r"data\.txt: unsupported file type '\.txt'"):
        task.load(cfg("gsm8k", txt, test), "train")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "a", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(UsageError, match=r"broken\.jsonl: cannot read as jsonl: "):
        task.load(cfg("gsm8k", broken, test), "train")
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    with pytest.raises(UsageError, match=r"fake\.parquet: cannot read as parquet: "):
        task.load(cfg("gsm8k", fake, test), "train")
    # readable, but no usable row: the split reports it
    junk = tmp_path / "junk.jsonl"
    junk.write_text(json.dumps({"text": "no question column"}) + "\n")
    with pytest.raises(UsageError, match=r"junk\.jsonl: only 0 usable train items.*1 rows without a usable answer"):
        split_items(task, cfg("gsm8k", junk, test, n_prompts=1, n_test=1), seed=0)


def test_usage_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b'question,answer\n"unclosed,\x00\x00\n')
    try:
        get_task("gsm8k").load(cfg("gsm8k", broken, broken), "train")
    except UsageError as e:
        assert "\n" not in str(e)
    else:  # pandas may read it; then it must at least give no usable rows
        items, skipped = get_task("gsm8k").load(cfg("gsm8k", broken, broken), "train")
        assert items == []


# ---------------------------------------------------------------------------------------------
# the hub path


class FakeHub:
    """Records load_dataset calls and serves rows, or fails like an offline machine."""

    def __init__(self, rows=None, error=None):
        self.calls, self.rows, self.error = [], rows or {}, error

    def __call__(self, path, name=None, split=None, **kw):
        import datasets
        self.calls.append((path, name, split))
        if self.error:
            raise self.error
        return datasets.Dataset.from_list(self.rows[(name, split)])


def test_hub_defaults_and_overrides(monkeypatch):
    import datasets
    row = {"question": "Two plus two?", "answer": "2 + 2 = 4\n#### 4"}
    hub = FakeHub({("main", "train"): [row], ("main", "test"): [row], (None, "validation"): [row]})
    monkeypatch.setattr(datasets, "load_dataset", hub)
    items, _ = get_task("gsm8k").load(TaskConfig(name="gsm8k"), "test")
    assert hub.calls == [("openai/gsm8k", "main", "test")] and items[0].gold == "4"
    get_task("gsm8k").load(TaskConfig(name="gsm8k", source="my/gsm", train_split="validation"), "train")
    assert hub.calls[-1] == ("my/gsm", None, "validation")


def test_math_hub_concatenates_subjects(monkeypatch):
    import datasets
    from silab.tasks.math_task import SUBJECTS
    rows = {(s, "test"): [{"problem": f"{s}?", "solution": f"$\\boxed{{{i}}}$"}] for i, s in enumerate(SUBJECTS)}
    hub = FakeHub(rows)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    items, _ = get_task("math").load(TaskConfig(name="math"), "test")
    assert [c[1] for c in hub.calls] == list(SUBJECTS)
    assert [it.gold for it in items] == [str(i) for i in range(len(SUBJECTS))]
    hub.calls.clear()
    get_task("math").load(TaskConfig(name="math", subset="algebra, geometry"), "test")
    assert hub.calls == [("EleutherAI/hendrycks_math", "algebra", "test"),
                         ("EleutherAI/hendrycks_math", "geometry", "test")]


def test_hub_failure_is_a_usage_error(monkeypatch):
    import datasets
    monkeypatch.setattr(datasets, "load_dataset", FakeHub(error=ConnectionError("Couldn't reach the hub\nmore")))
    with pytest.raises(UsageError, match=r"^renma/ProntoQA: cannot load split 'validation' from the Hugging "
                                         r"Face hub: Couldn't reach the hub \(offline\?"):
        get_task("prontoqa").load(TaskConfig(name="prontoqa", test_split="validation"), "test")
