"""The self-improvement loop of Sun et al. (arXiv 2507.00075), one round at a time.

    for t in rounds:
        if t > 0: train pi_t from pi_{t-1} on round t-1's Best-of-N picks
                  (+ the external data scheduled for t, + the judge's own verdicts if rehearsing)
        samples = solver(prompts, N)                    # pi_t samples N answers per prompt
        scores  = verifier(prompts, samples)            # pi_t judges its own answers
        picks   = best_of_n(samples, scores, sigma)     # lowest NLL among those judged >= sigma
        U_s, U_v, G, accuracies = measure(...); evaluate pi_t on the held-out test split
        save round t (atomically)

Round t's seeds derive from (run seed, t), so a resumed run repeats an uninterrupted one.

Two clocks (train.picks). "refresh" (the default, the outer clock): each round trains on the picks
of the round before, and t counts rounds. "fixed" (the inner clock, the protocol of the paper's
figures): round 0's picks (and judge verdicts) are the training set of one continuous fine-tune,
stored once in rounds/000/fixed_set.jsonl; round t > 0 trains the next train.epochs of a seeded
stream of epochs over it, the optimiser continuing, and t counts epochs (round x train.epochs).
Sampling, judging, picking, measuring and evaluating are the same on both clocks.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
import random
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from silab.config import Profile, apply_overrides, dump_toml, schedule_shares
from silab.engine import verifiers
from silab.engine.backend import Backend, Example, Sample, stream
from silab.engine.backends import make_backend
from silab.engine.select import best_of_n, measure, pass_at_k
from silab.engine.tokens import continuation_ids, encode_prompt
from silab.protocol import (BUILD, LOG, PHASE_FINISHED, PHASE_STARTED, PHASES, PROGRESS, ROUND_FINISHED,
                            RUN_STARTED, VERSION)
from silab.runs.store import RunDir
from silab.tasks import Splits, format_prompt, get_task
from silab.tasks.base import Item

TRAIN, SAMPLE, JUDGE, EVALUATE = PHASES
FIXED_SET = "fixed_set.jsonl"   # in rounds/000 on the inner clock: the training set of the whole run


class Paused(Exception):
    """Raised between phases when the user asked to pause: the round restarts from its start."""


class Stopped(Exception):
    """Raised between phases when the user asked to stop the engine."""


def round_seed(seed: int, t: int, phase: str) -> int:
    return (seed * 1_000_003 + t * 1009 + PHASES.index(phase)) % (2**31)


def external_counts(shares: np.ndarray, pool: int) -> list[int]:
    """Examples of the pool per round 1..T, by cumulative rounding so none is used twice."""
    cum = np.round(np.cumsum(shares) * pool).astype(int)
    return list(np.diff(np.concatenate([[0], cum])))


def plan_shares(profile: Profile) -> list[float]:
    """eta_1..eta_T: the share of the external pool that joins each round's training."""
    return schedule_shares(profile.external.schedule, profile.rounds)


def external_for(profile: Profile, pool: list[Item], records: list[dict], t: int) -> list[Item]:
    """Round t's share of the pool, continuing after the examples earlier rounds used (their
    records), so no example is used twice even when the plan changes mid-run."""
    shares = plan_shares(profile)
    if not pool or t > len(shares):
        return []
    counts = external_counts(np.array(shares), len(pool))
    used = sum(len(r.get("external_ids", [])) for r in records if r["round"] < t)
    return pool[used:used + counts[t - 1]]


def clock(profile: Profile) -> tuple[str, float]:
    """(unit, spacing): what t counts and how much of it one round is."""
    return ("epoch", profile.train.epochs) if profile.train.picks == "fixed" else ("round", 1.0)


def manifest(profile: Profile, argv: list[str]) -> dict:
    import peft
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"silab": importlib.metadata.version("silab"), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "seed": profile.seed, "git_commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "clock": clock(profile)[0], "spacing": clock(profile)[1],
            "argv": argv, "host": platform.node()}


def profile_toml(profile: Profile) -> str:
    return dump_toml(profile.to_dict())


def record_event(run: RunDir, emit: Callable[[dict], None], kind: str, **fields) -> dict:
    """An event, appended to RUN/events.jsonl and sent to the driver (the same object)."""
    event = {"event": kind, "time": round(time.time(), 3), **fields}
    run.event(event)
    emit(event)
    return event


@dataclass
class Control:
    """How the driver (headless CLI or interactive engine) talks to a running loop."""
    pause_requested: bool = False
    stop_requested: bool = False


class RoundLoop:
    """A run ready for its next round once constructed: the backend started (or given: the arms of
    a sweep share one model load), the policy and the last round's picks restored from the run
    folder, `next_round` set. `run_round()` runs it; `update()` changes settings for the rounds
    after. The run folder and the data split are the session's (checked before anything is written)."""

    def __init__(self, profile: Profile, run: RunDir, splits: Splits, emit: Callable[[dict], None],
                 control: Control | None = None, backend: Backend | None = None):
        self.p, self.run, self.splits, self._emit = profile, run, splits, emit
        self.control = control or Control()
        self.task = get_task(profile.task.name)
        self.seconds = dict.fromkeys(PHASES, 0.0)       # the current round's phase times
        done = run.completed()
        self.emit(RUN_STARTED, run_dir=str(run.path), profile=profile.name, rounds=profile.rounds,
                  resumed_from=done[-1] if done else None, protocol=VERSION)
        self.backend = backend or self.start_backend()
        if splits.skipped:
            self.emit(LOG, message=f"skipped {splits.skipped} dataset rows without a usable answer")
        self.prompts = [self.format(item) for item in splits.prompts]
        self.test_prompts = [self.format(item) for item in splits.test]
        self.prev: list[dict] | None = None      # the last completed round's samples.jsonl rows
        self.fixed: list[Example] | None = None  # the inner clock's training set (round 0's)
        self.next_round = 0
        self._restore()

    # --- events -------------------------------------------------------------------------------
    def emit(self, kind: str, **fields) -> None:
        record_event(self.run, self._emit, kind, **fields)

    @contextmanager
    def phase(self, t: int, name: str, total: int):
        self.emit(PHASE_STARTED, round=t, phase=name, total=total)
        start = time.perf_counter()
        last = [0.0]

        def progress(done: int, of: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.2 or done == of:
                last[0] = now
                self.emit(PROGRESS, round=t, phase=name, done=done, total=of)

        yield progress
        seconds = time.perf_counter() - start
        self.seconds[name] = round(seconds, 3)
        self.emit(PHASE_FINISHED, round=t, phase=name, seconds=round(seconds, 3), done=total)

    def between_phases(self) -> None:
        """Where a pause or stop takes effect. Not after evaluate: the round's last phase ends with
        its save, so a request made then waits for the round's end (the driver's check)."""
        if self.control.stop_requested:
            raise Stopped
        if self.control.pause_requested:
            raise Paused

    # --- set-up -------------------------------------------------------------------------------
    def start_backend(self) -> Backend:
        """Resolve the model (building the organism on first use) and start the profile's backend."""
        p = self.p
        model_path = p.model.path
        if model_path == "organism":
            from silab.engine.organism import ensure_organism

            def built(step, total, loss):
                if step == 1 or step % 20 == 0 or step == total:
                    self.emit(PROGRESS, round=None, phase=BUILD, done=step, total=total)

            self.emit(LOG, message=f"model organism ({p.model.organism}): building on first use, then cached")
            model_path = str(ensure_organism(p.model.organism, p.model.cache_dir, progress=built))
        return make_backend(p, model_path)

    def format(self, item: Item) -> str:
        return format_prompt(self.p.task, item, getattr(self.backend, "tok", None), self.splits.shots)

    def _restore(self) -> None:
        """Put the policy, the previous round's picks and next_round back to where the last completed
        round left them (at start, and when a pause drops a half-done round)."""
        done = self.run.completed()
        if not done:
            self.backend.load_adapter(None)
            self.prev, self.next_round = None, 0
            return
        last = self.run.round_dir(done[-1])
        self.backend.load_adapter(last / "adapter" if (last / "adapter").is_dir() else None)
        self.prev = [json.loads(line) for line in (last / "samples.jsonl").read_text().splitlines()]
        if self.p.train.picks == "fixed":
            rows = (self.run.round_dir(0) / FIXED_SET).read_text().splitlines()
            self.fixed = [(r["prompt_ids"], r["target_ids"]) for r in map(json.loads, rows)]
        self.next_round = done[-1] + 1

    def update(self, overrides: list[str], where: str) -> Profile:
        """Change settings mid-run ('key=value' strings): validated as a whole profile, written to
        profile.toml (nothing is written when refused), read from the next round on."""
        self.p = apply_overrides(self.p, overrides, where)
        self.run.write_profile(profile_toml(self.p))
        return self.p

    # --- one round ----------------------------------------------------------------------------
    def run_round(self) -> dict:
        """Run round `next_round`, save it and move on. A pause drops the half-done round: the
        policy goes back to the last saved one, and the same round runs again next time."""
        try:
            record = self._round(self.next_round)
        except Paused:
            self._restore()
            raise
        self.next_round += 1
        return record

    def _round(self, t: int) -> dict:
        p, task = self.p, self.task
        self.seconds = dict.fromkeys(PHASES, 0.0)
        started = time.perf_counter()
        train_stats, external_ids = None, []
        if t > 0:
            examples, external_ids = self.training_set(t)
            with self.phase(t, TRAIN, len(examples)) as progress:
                train_stats = self.backend.train(examples, p.train.lr, round_seed(p.seed, t, TRAIN), progress)
            self.between_phases()

        n = p.sampling.n_samples
        with self.phase(t, SAMPLE, len(self.prompts)) as progress:
            samples = self.backend.sample(self.prompts, n, round_seed(p.seed, t, SAMPLE), progress)
        self.between_phases()
        with self.phase(t, JUDGE, len(self.prompts) * n) as progress:
            score = self.judge(self.prompts, samples, progress)
        self.between_phases()

        logprob = np.array([[s.logprob for s in row] for row in samples])
        length = np.array([[s.n_tokens for s in row] for row in samples])
        golds = [item.gold for item in self.splits.prompts]
        timeouts = self.check_timeouts()
        correct = np.array([[task.is_correct(s.text, g) for s in row] for row, g in zip(samples, golds)])
        picks, fallback = best_of_n(logprob, length, score, p.verify.sigma)
        record = {"round": t, **measure(logprob, length, score, correct, picks, fallback, p.verify.sigma),
                  "truncated": int(sum(not s.finished for row in samples for s in row)),
                  "check_timeouts": self.check_timeouts() - timeouts}

        with self.phase(t, EVALUATE, len(self.test_prompts)) as progress:
            test_rows, test_metrics = self.evaluate(t, progress)
        record.update(test_metrics)
        unit, spacing = clock(p)
        record.update({
            "clock": unit, "spacing": spacing, "t": t * spacing,
            "n_prompts": len(self.prompts), "n_samples": n, "sigma": p.verify.sigma, "lr": p.train.lr,
            "external": len(external_ids), "external_ids": external_ids, "train": train_stats,
            "seconds": {**self.seconds, "total": round(time.perf_counter() - started, 3)},
        })
        rows = [{"id": item.id, "prompt": prompt, "gold": item.gold, "pick": int(k), "fallback": bool(fb),
                 "responses": [{"text": s.text, "tokens": s.tokens, "n_tokens": s.n_tokens, "finished": s.finished,
                                "logprob": round(s.logprob, 5),
                                "score": round(float(sc), 5), "correct": bool(c)}
                               for s, sc, c in zip(row, score_row, corr_row)]}
                for item, prompt, row, score_row, corr_row, k, fb
                in zip(self.splits.prompts, self.prompts, samples, score, correct, picks, fallback)]
        files = {"samples.jsonl": rows, "test.jsonl": test_rows}
        if t == 0 and p.train.picks == "fixed":
            self.fixed = sum(self.own_examples(rows), [])
            files[FIXED_SET] = [{"prompt_ids": list(a), "target_ids": list(b)} for a, b in self.fixed]
        self.run.write_round(t, record, files, self.backend.save_adapter if t > 0 else None)
        self.prev = rows
        self.emit(ROUND_FINISHED, round=t, record=record)
        return record

    def check_timeouts(self) -> int:
        """Answer checks that ran out of time so far (counted as wrong; MATH's sympy can hang)."""
        return getattr(self.task, "check_timeouts", lambda: 0)()

    def judge(self, prompts: list[str], samples: list[list[Sample]], progress) -> np.ndarray:
        """The model scores its own answers with the profile's verifier (silab.engine.verifiers)."""
        judge = verifiers.judge(self.p, self.backend.tok)
        texts = [judge.prompt(pr, s.text) for pr, row in zip(prompts, samples) for s in row]
        probs = self.backend.next_token_probs(texts, judge.words, progress)
        return judge.score(probs).reshape(len(prompts), -1)

    def training_set(self, t: int) -> tuple[list[Example], list[str]]:
        """Round t's training: the model's own examples (on the inner clock, the next stretch of the
        stream over round 0's) and the external data scheduled for round t. External text is
        encoded once, as it follows its prompt, and closed with the model's end of turn; on the
        inner clock it is slotted at seeded places into the stretch, each example used once."""
        tok, end = self.backend.tok, self.backend.end_id
        external = external_for(self.p, self.splits.external, self.run.records(), t)
        extra = [continuation_ids(tok, self.format(item), item.solution or item.gold, end) for item in external]
        ids = [item.id for item in external]
        if self.p.train.picks == "refresh":
            picks, verdicts = self.own_examples(self.prev)
            return picks + extra + verdicts, ids
        n, b = len(self.fixed), self.p.train.batch_size
        steps = max(1, round(self.p.train.epochs * n / b))
        order = stream(n, round_seed(self.p.seed, 0, TRAIN), (t - 1) * steps * b, steps * b)
        examples = [self.fixed[i] for i in order]
        rng = random.Random(round_seed(self.p.seed, t, TRAIN))
        for example in extra:
            examples.insert(rng.randrange(len(examples) + 1), example)
        return examples, ids

    def own_examples(self, rows: list[dict]) -> tuple[list[Example], list[Example]]:
        """A round's picks (their sampled ids, end of turn included: what U_v measured) and
        (optionally) the model's own confident verdicts on its samples, which keep its judging
        skill through training."""
        tok, end = self.backend.tok, self.backend.end_id
        picks = [(encode_prompt(tok, row["prompt"]), row["responses"][row["pick"]]["tokens"]) for row in rows]
        verdicts = []
        if self.p.train.judge_rehearsal:
            # the judge's own confident verdicts (score above or below 0.5), whatever the selection
            # rule, in the verifier's words for "right" and "wrong"
            judge = verifiers.judge(self.p, tok)
            for row in rows:
                best = max(row["responses"], key=lambda r: r["score"])
                worst = min(row["responses"], key=lambda r: r["score"])
                if best["score"] >= 0.5:
                    verdicts.append(continuation_ids(tok, judge.prompt(row["prompt"], best["text"]), judge.yes, end))
                if worst["score"] < 0.5:
                    verdicts.append(continuation_ids(tok, judge.prompt(row["prompt"], worst["text"]), judge.no, end))
        return picks, verdicts

    def evaluate(self, t: int, progress) -> tuple[list[dict], dict]:
        """Accuracy of sampled answers on the test split (the distribution U_s measures), greedy
        accuracy beside it, and pass@k when asked for."""
        s, task = self.p.sampling, self.task
        k_max = max(s.test_samples, s.pass_k)
        samples = self.backend.sample(self.test_prompts, k_max, round_seed(self.p.seed, t, EVALUATE), progress)
        greedy = self.backend.greedy(self.test_prompts, lambda d, n: None)
        rows, correct, greedy_ok = [], [], []
        for item, row, g in zip(self.splits.test, samples, greedy):
            c = [task.is_correct(x.text, item.gold) for x in row]
            correct.append(c)
            greedy_ok.append(task.is_correct(g, item.gold))
            rows.append({"id": item.id, "gold": item.gold, "greedy": g, "greedy_correct": greedy_ok[-1],
                         "samples": [x.text for x in row], "correct": c})
        correct = np.array(correct)
        metrics = {"test_acc": float(correct[:, :s.test_samples].mean()),
                   "test_greedy_acc": float(np.mean(greedy_ok))}
        if s.pass_k:
            ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= s.pass_k]
            metrics["pass_at_k"] = {str(k): float(np.mean([pass_at_k(s.pass_k, int(c[:s.pass_k].sum()), k)
                                                           for c in correct])) for k in ks}
        return rows, metrics
