"""One key's rule, checked whenever a profile section is constructed, and the external-data schedule.

A section is a frozen dataclass whose fields come from `option(default, doc=..., lo=.., ...)`; its
`__post_init__` coerces each value to the field's type (an int passes as a float, a dict as a table),
checks the range, the choices or the registry, then the section's own rules across keys.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from dataclasses import field
from typing import Callable, Union

from silab.errors import UsageError
from silab.protocol import SCHEDULES


class ProfileError(UsageError):
    """A key that breaks a rule; the message names the dotted key, the caller adds where it came from."""


def option(default, *, doc: str, lo=None, hi=None, gt=None, choices=None, names=None):
    """A field with its doc line and its rule: lo <= v <= hi, v > gt, v in choices, or v in the names a
    registry lists ("module:function", imported when a profile is built: config imports no task or
    engine module itself). Lists are copied per instance."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "gt": gt, "choices": choices, "names": names}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def registered(names: str) -> list[str]:
    """The names a registry ("module:function") lists, e.g. the backends or the tasks."""
    module, function = names.split(":")
    return list(getattr(importlib.import_module(module), function)())


class Section:
    """Validation on construction: each key's type (ints pass as floats), range, choices and registry,
    then the rules across keys (`check`). KEY is the section's dotted prefix in messages."""
    KEY = ""

    def __post_init__(self):
        types = field_types(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(getattr(self, f.name), types[f.name], f,
                                                      self.KEY + f.name))
        self.check()

    def check(self) -> None:
        """Rules that one key's range cannot express."""

    @classmethod
    def from_dict(cls, data: dict):
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ProfileError(f"unknown key '{cls.KEY}{key}' (expected one of: {', '.join(known)})")
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# one key's rule

_TYPES: dict[type, dict] = {}


def field_types(cls) -> dict:
    if cls not in _TYPES:
        _TYPES[cls] = typing.get_type_hints(cls)
    return _TYPES[cls]


def type_name(tp) -> str:
    if typing.get_origin(tp) is Union:
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {type_name(typing.get_args(tp)[0]).split()[-1]}s"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value, tp):
    """Return value as type tp, or raise TypeError. Ints pass as floats; bools never pass as numbers."""
    if typing.get_origin(tp) is Union:
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                pass
        raise TypeError
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, typing.get_args(tp)[0]) for v in value]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return tp.from_dict(value)
        if isinstance(value, tp):
            return value
        raise TypeError
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise TypeError


def _checked(value, tp, f: dataclasses.Field, dotted: str):
    try:
        value = _coerce(value, tp)
    except TypeError:
        table = f" [{dotted}]" if dataclasses.is_dataclass(tp) else ""
        raise ProfileError(f"key '{dotted}' must be {type_name(tp)}{table}, got {value!r}") from None
    problem = _problem(f.metadata, value)
    if problem:
        doc = f.metadata.get("doc", "")
        raise ProfileError(f"key '{dotted}' must be {problem}, got {value!r}"
                           + (f" ({doc})" if doc and len(doc) <= 90 else ""))
    return value


def _rule(meta) -> list[tuple[str, Callable]]:
    """A key's rule as (words after "must be", the test a value passes)."""
    choices = registered(meta["names"]) if meta.get("names") else meta.get("choices")
    rule = [("one of " + ", ".join(repr(c) if c == "" else c for c in choices), lambda v: v in choices)
            ] if choices else []
    for op, bound, test in ((">=", meta.get("lo"), lambda v, b: v >= b), ("<=", meta.get("hi"), lambda v, b: v <= b),
                            (">", meta.get("gt"), lambda v, b: v > b)):
        if bound is not None:
            rule.append((f"{op} {bound}", lambda v, b=bound, test=test: test(v, b)))
    return rule


def _problem(meta, value) -> str | None:
    """What `value` breaks of the key's rule, as the words after "must be"; None if nothing."""
    return next((words for words, passes in _rule(meta) if not passes(value)), None)


def describe(meta) -> str:
    """The whole rule in words ("" = any value of the key's type), for `silab profiles --keys`."""
    return ", ".join(words for words, _ in _rule(meta))


# ---------------------------------------------------------------------------------------------
# the external-data schedule

def schedule_shares(schedule: str | typing.Sequence[float], rounds: int) -> list[float]:
    """Shares eta_1..eta_T of the external pool for T = rounds: a name from protocol.SCHEDULES or a list.

    early spends everything in round 1, late in round T, uniform 1/T per round, none nothing; a list
    shorter than T is padded with zeros. Raises ValueError on a bad name or list."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: must be {', '.join(SCHEDULES[:-1])}, "
                             f"{SCHEDULES[-1]} or a list of shares")
        shares = [0.0] * rounds
        if rounds and schedule == "uniform":
            shares = [1.0 / rounds] * rounds
        elif rounds and schedule in ("early", "late"):
            shares[0 if schedule == "early" else -1] = 1.0
        return shares
    try:
        items = list(schedule)
        if any(isinstance(x, (bool, str)) for x in items):
            raise TypeError
        given = [float(x) for x in items]
    except (TypeError, ValueError):
        raise ValueError("a schedule list must hold numbers (shares of the external pool)") from None
    if not all(math.isfinite(x) for x in given):
        raise ValueError("schedule shares must be finite numbers")
    if given and min(given) < 0:
        raise ValueError(f"the schedule has a negative share ({min(given):g})")
    if sum(given) > 1 + 1e-9:
        raise ValueError(f"schedule shares sum to {sum(given):g} > 1: they may add up to 1 at most "
                         "(the pool is spent once)")
    if len(given) > rounds:
        raise ValueError(f"the schedule lists {len(given)} shares but the run has {rounds} rounds")
    return given + [0.0] * (rounds - len(given))
