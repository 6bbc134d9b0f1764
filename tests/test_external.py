"""The external pool M (cross-improvement, Sun et al. Sec. 5): disjoint from the self-improvement
prompts and the test split, carrying reference solutions, spent once over the rounds, and schedules
that cannot be spent are refused with a clear one-line error."""
from pathlib import Path

import numpy as np
import pytest

from silab.config import TaskConfig, apply_overrides, load_profile, schedule_shares
from silab.engine.loop import external_counts, external_for
from silab.errors import UsageError
from silab.tasks import get_task, split_items
from silab.tasks.loading import question_key

ROOT = Path(__file__).resolve().parent.parent
MICRO = str(ROOT / "tests" / "micro.toml")
DATA = ROOT / "tests" / "data" / "tasks"


def assert_pool_disjoint(s):
    pool_ids = {it.id for it in s.external}
    pool_q = {question_key(it.question) for it in s.external}
    for other in (s.prompts, s.test, s.shots):
        assert not pool_ids & {it.id for it in other}
        assert not pool_q & {question_key(it.question) for it in other}
    assert len(pool_ids) == len(s.external)


@pytest.mark.parametrize("seed", [0, 1])
def test_organism_pool_is_disjoint_and_holds_correct_solutions(seed):
    """The tiny profile's sizes: 256 prompts, 256 test items, a pool of 256 sums."""
    task = get_task("arith")
    cfg = TaskConfig(name="arith", n_prompts=256, n_test=256, n_external=256, prompt_template="{question}=")
    s = split_items(task, cfg, seed)
    assert len(s.external) == 256
    assert_pool_disjoint(s)
    for it in s.external:
        assert it.solution and task.is_correct(it.solution, it.gold)


@pytest.mark.parametrize("name, train, test, sizes", [
    ("gsm8k", "gsm8k_train.jsonl", "gsm8k_test.csv", dict(n_prompts=4, n_external=4, n_test=5)),
    ("math", "math_train.jsonl", "math_test.csv", dict(n_prompts=3, n_external=3, n_test=3)),
])
def test_benchmark_pool_is_held_out_train_items_with_reference_solutions(name, train, test, sizes):
    task = get_task(name)
    cfg = TaskConfig(name=name, train_files=[str(DATA / train)], test_files=[str(DATA / test)], **sizes)
    s = split_items(task, cfg, seed=0)
    assert len(s.external) == sizes["n_external"]
    assert_pool_disjoint(s)
    for it in s.external:
        assert it.solution and task.is_correct(it.solution, it.gold)


@pytest.mark.parametrize("schedule", ["early", "uniform", "late", [0.3, 0.0, 0.45], [0.1, 0.1, 0.1]])
@pytest.mark.parametrize("T, pool", [(10, 256), (7, 100), (3, 5)])
def test_external_counts_spend_the_planned_share_once(schedule, T, pool):
    shares = np.array(schedule_shares(schedule, T))
    counts = external_counts(shares, pool)
    assert len(counts) == T and min(counts) >= 0
    assert sum(counts) == round(shares.sum() * pool)   # cumulative rounding: no drift, no overspend
    assert np.all(np.abs(np.cumsum(counts) - np.cumsum(shares) * pool) <= 0.5 + 1e-9)


def test_no_pool_item_is_used_twice_even_when_the_plan_changes_mid_run():
    profile = load_profile(MICRO, ["rounds=6", "task.n_external=12", "task.n_prompts=4", "task.n_test=4",
                                   "external.schedule=[0.25, 0.25]"])
    splits = split_items(get_task("arith"), profile.task, profile.seed)
    records, used = [], []
    for t in range(1, 7):
        if t == 3:   # the lab replans the rounds not yet run
            profile = apply_overrides(profile, ['external.schedule="uniform"'], "inject")
        ids = [it.id for it in external_for(profile, splits.external, records, t)]
        used += ids
        records.append({"round": t, "external_ids": ids})
    assert len(used) == len(set(used))
    pool = [it.id for it in splits.external]
    assert used == pool[:len(used)]              # in pool order, continuing where the last round ended
    assert set(used).isdisjoint(it.id for it in splits.prompts + splits.test)


@pytest.mark.parametrize("schedule, says", [
    ("[0.5, -0.1]", "negative share"),
    ("[0.7, 0.6]", "sum to 1.3 > 1"),
    ("[0.1, 0.1, 0.1]", "lists 3 shares but the run has 2 rounds"),
    ("sometimes", "must be none, early, uniform, late or a list of shares"),
])
def test_profiles_refuse_schedules_that_cannot_be_spent(schedule, says):
    with pytest.raises(UsageError, match=says):
        load_profile(MICRO, [f"external.schedule={schedule}"])   # micro.toml: rounds = 2


def test_shortening_the_run_below_the_schedule_is_refused():
    with pytest.raises(UsageError, match="lists 3 shares but the run has 2 rounds"):
        load_profile(MICRO, ["rounds=5", "external.schedule=[0.2, 0.2, 0.2]", "rounds=2"])
