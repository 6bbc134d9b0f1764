"""Running the arms: every arm for every seed in-process, one backend and one data split per seed,
and the rounds an earlier arm already ran on the same data copied instead of rerun."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from silab.sweep.arms import Arm


def shared_prefix(counts: list[int], done: list[tuple[Path, list[int]]]) -> tuple[Path | None, int]:
    """The seed's finished arm whose external counts per round agree longest with `counts`, and
    through which round they agree. Round 0 never depends on the schedule, and round t depends only
    on the seed and the training data of rounds 1..t, so those rounds are the same run."""
    best, upto = None, -1
    for path, other in done:
        s = 0
        while s < len(counts) and counts[s] == other[s]:
            s += 1
        if s > upto:
            best, upto = path, s
    return best, upto


def share_rounds(source: Path, run, upto: int) -> None:
    """Copy rounds 0..upto (folders; rounds.jsonl is re-derived) from an arm that ran them."""
    for t in range(upto + 1):
        shutil.copytree(source / "rounds" / f"{t:03d}", run.round_dir(t))
    run.discard_partial()  # re-derives rounds.jsonl from the completed round folders


def run_arms(arms: list[Arm], profiles: dict, out: Path, say) -> dict[str, list[Path]]:
    """Every arm for every seed, in-process, one backend per seed. Returns arm label -> run folders."""
    from silab.console import ConsolePrinter
    from silab.engine import session
    from silab.engine.loop import external_counts, plan_shares, record_event
    from silab.protocol import LOG

    printer = ConsolePrinter(out=sys.stderr, err=sys.stderr)
    runs: dict[str, list[Path]] = {arm.label: [] for arm in arms}
    seeds = sorted({seed for _, seed in profiles})
    for i, seed in enumerate(seeds):
        backend, splits, done = None, None, []   # one model load and one data split per seed
        for j, arm in enumerate(arms):
            profile = profiles[arm.label, seed]
            path = out / f"{arm.folder}-s{seed}"
            say(f"[seed {seed} ({i + 1}/{len(seeds)}), arm {arm.label} ({j + 1}/{len(arms)})] {path}")
            start = session.new_run(profile, str(path), splits)
            splits = start.splits
            counts = external_counts(np.array(plan_shares(profile)), len(start.splits.external))
            source, upto = shared_prefix(counts, done)
            if source is not None:
                share_rounds(source, start.run, upto)
                which = "round 0" if upto == 0 else f"rounds 0..{upto}"
                record_event(start.run, printer, LOG, message=f"{which} copied from {source.name}: same seed, "
                                                              "same model, same external data so far")
            backend = session.run_rounds(start, printer, backend).backend
            done.append((start.run.path, counts))
            runs[arm.label].append(path)
        if backend is not None:
            backend.close()
    return runs
