"""The sweep's arms: --schedules parsed into the control arm and the arms that spend the pool,
each with its own validated profile."""
from __future__ import annotations

import json
from dataclasses import dataclass

from silab.config import profile_from_dict, schedule_shares
from silab.errors import UsageError
from silab.protocol import SCHEDULES


@dataclass(frozen=True)
class Arm:
    label: str                    # what the table shows: a name, or the list of shares
    folder: str                   # run folder stem: the name, or list1, list2, ...
    spec: str | tuple[float, ...]  # what external.schedule gets


# --- input -----------------------------------------------------------------------------------

def split_top_level(text: str) -> list[str]:
    """'early,[0.5,0.5],late' -> ['early', '[0.5,0.5]', 'late'] (commas inside brackets stay)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_schedules(text: str, rounds: int) -> list[Arm]:
    """The arms, control first: names from none/early/uniform/late, or lists of shares in brackets."""
    arms, lists = [Arm("none", "none", "none")], 0
    for part in (p.strip() for p in split_top_level(text)):
        if not part:
            raise UsageError(f"--schedules {text!r}: empty entry (give e.g. early,uniform,late)")
        if part.startswith("["):
            try:
                shares = json.loads(part)
            except json.JSONDecodeError:
                raise UsageError(f"--schedules {part}: not a list of numbers, e.g. [0.5,0.25,0.25]") from None
            if not isinstance(shares, list) or any(isinstance(x, bool) for x in shares):
                raise UsageError(f"--schedules {part}: not a list of numbers, e.g. [0.5,0.25,0.25]")
            try:
                schedule_shares(shares, rounds)
            except ValueError as e:
                raise UsageError(f"--schedules {part}: {e}") from None
            spec = tuple(float(x) for x in shares)
            if any(a.spec == spec for a in arms):
                continue
            lists += 1
            arms.append(Arm("[" + ", ".join(f"{x:g}" for x in spec) + "]", f"list{lists}", spec))
        elif part in SCHEDULES:
            if all(a.spec != part for a in arms):
                arms.append(Arm(part, part, part))
        else:
            raise UsageError(f"--schedules: unknown schedule {part!r} (choose from {', '.join(SCHEDULES)} "
                             "or give shares in brackets, e.g. [0.5,0.5])")
    return arms


def arm_profile(base, arm: Arm, seed: int):
    """The base profile with the arm's schedule and seed, validated like a profile file."""
    data = base.to_dict()
    data["external"]["schedule"] = arm.spec if isinstance(arm.spec, str) else list(arm.spec)
    data["seed"] = seed
    return profile_from_dict(data, f"--schedules {arm.label}")
