"""Profiles: TOML files validated into typed dataclasses.

A profile is the whole description of an experiment. Every key has a type and, where it matters, a
range; unknown keys are errors, so a typo never silently falls back to a default. `--set a.b=value`
goes through the same validation as the file.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from silab.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _f(default, *, lo=None, hi=None, choices=None, doc=""):
    """A field with its validation range; lists are copied per instance."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    path: str = _f("organism", doc='"organism" (built offline), a local folder or a hub id')
    organism: str = _f("tiny", choices=["tiny", "micro"], doc="organism size, when path = \"organism\"")
    backend: str = _f("hf", choices=["hf", "vllm"])
    dtype: str = _f("float32", choices=["float32", "bfloat16", "float16", "auto"])
    device: str = _f("auto", doc='"auto", "cpu", "cuda" or "cuda:N"')
    max_new_tokens: int = _f(16, lo=1)
    trust_remote_code: bool = _f(False)
    cache_dir: str = _f("", doc="where the organism is built; empty = the user's cache dir")
    gpu_memory_utilization: float = _f(0.6, lo=0.05, hi=0.99)
    max_model_len: int = _f(4096, lo=64)
    tensor_parallel_size: int = _f(1, lo=1)
    data_parallel_size: int = _f(1, lo=1, doc="vLLM replicas on separate GPUs of one box")
    pipeline_parallel_size: int = _f(1, lo=1, doc="vLLM pipeline stages (multi-node: e.g. one per node)")
    distributed_executor_backend: str = _f("", choices=["", "mp", "ray"], doc='vLLM executor: "" = vLLM decides, "ray" = multi-node')


@dataclass
class TaskConfig:
    name: str = _f("arith", doc="a registered task: arith, gsm8k, math, prontoqa")
    source: str = _f("", doc="hub dataset id; empty = the task's default")
    subset: str = _f("", doc="hub dataset config name")
    train_files: list[str] = _f([], doc="local jsonl/parquet/csv files for the train split")
    test_files: list[str] = _f([], doc="local jsonl/parquet/csv files for the test split")
    train_split: str = _f("train")
    test_split: str = _f("test")
    n_prompts: int = _f(64, lo=1, doc="self-improvement prompts per round")
    n_test: int = _f(128, lo=1, doc="held-out test items")
    n_external: int = _f(0, lo=0, doc="size of the external labelled pool M")
    prompt_template: str = _f("{question}")
    few_shot: int = _f(0, lo=0)
    chat: bool = _f(False, doc="wrap prompts in the tokenizer's chat template")
    system_prompt: str = _f("")


@dataclass
class SamplingConfig:
    n_samples: int = _f(16, lo=1, hi=1024)
    temperature: float = _f(1.0, lo=0.0)
    top_p: float = _f(1.0, lo=0.0, hi=1.0)
    batch_size: int = _f(16, lo=1, doc="prompts per generate call (x n_samples sequences)")
    test_samples: int = _f(4, lo=1, doc="sampled answers per test item for test_acc")
    pass_k: int = _f(0, lo=0, doc="0 = no pass@k; else samples per test item for pass@k")


@dataclass
class VerifyConfig:
    method: str = _f("tf", choices=["tf", "qe"])
    sigma: float = _f(0.5, lo=0.0, hi=1.0)
    tf_template: str = _f(
        "{prompt}{response}\nIs the answer above correct? Answer True or False.\nAnswer:")
    tf_question: str = _f("", doc="with task.chat: the judge's question; the template is built from the "
                          "tokenizer's chat template (tf_template is then unused)")
    true_token: str = _f(" True")
    false_token: str = _f(" False")
    qe_template: str = _f(
        "{prompt}{response}\nRate the answer above from 1 (wrong) to 5 (correct).\nScore:")
    qe_question: str = _f("", doc="with task.chat: the quality judge's question (see tf_question)")
    qe_tokens: list[str] = _f([" 1", " 2", " 3", " 4", " 5"])
    batch_size: int = _f(64, lo=1)


@dataclass
class LoraConfig:
    rank: int = _f(16, lo=1)
    alpha: float = _f(32.0, lo=0.0)
    dropout: float = _f(0.0, lo=0.0, hi=1.0)
    target_modules: list[str] = _f(["all-linear"])


@dataclass
class TrainConfig:
    lr: float = _f(1e-5, lo=0.0, hi=1.0)
    picks: str = _f("refresh", choices=["refresh", "fixed"],
                    doc='"refresh": each round trains on the previous round\'s new picks (the outer clock, '
                        'rounds); "fixed": round 0\'s picks are the training set of one continuous '
                        'fine-tune, measured at checkpoints (the paper\'s figures: the inner clock, epochs)')
    epochs: float = _f(1.0, lo=0.0, doc="training per round, in epochs of its training set; may be a "
                       "fraction (0.5: a checkpoint every half epoch); must be > 0")
    batch_size: int = _f(8, lo=1)
    grad_accum: int = _f(1, lo=1)
    weight_decay: float = _f(0.0, lo=0.0)
    max_grad_norm: float = _f(1.0, lo=0.0)
    judge_rehearsal: bool = _f(False, doc="also train on the model's own verdicts (keeps the judge)")


@dataclass
class ExternalConfig:
    schedule: Union[str, list[float]] = _f("none", doc='"none", "early", "uniform", "late" or a list of shares')


@dataclass
class Profile:
    name: str = _f("unnamed")
    description: str = _f("")
    seed: int = _f(0, lo=0)
    rounds: int = _f(10, lo=0)
    run_root: str = _f("logs")
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    external: ExternalConfig = field(default_factory=ExternalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# validation

def _type_name(tp) -> str:
    if typing.get_origin(tp) is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
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
        if not isinstance(value, list):
            raise TypeError
        return [_coerce(v, typing.get_args(tp)[0]) for v in value]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise TypeError


def _build(cls, data: dict, where: str, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + key
        if key not in names:
            raise UsageError(f"{where}: unknown key '{dotted}' (expected one of: {', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise UsageError(f"{where}: key '{dotted}' must be a table [{dotted}]")
            kwargs[key] = _build(tp, value, where, dotted + ".")
            continue
        try:
            value = _coerce(value, tp)
        except TypeError:
            raise UsageError(f"{where}: key '{dotted}' must be {_type_name(tp)}, got {value!r}") from None
        _check_range(names[key].metadata, value, where, dotted)
        kwargs[key] = value
    return cls(**kwargs)


def _check_range(meta, value, where, dotted):
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{where}: key '{dotted}' must be one of {', '.join(choices)}, got {value!r}")
    if lo is not None and value < lo:
        raise UsageError(f"{where}: key '{dotted}' must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise UsageError(f"{where}: key '{dotted}' must be <= {hi}, got {value!r}")


def _check_profile(p: Profile, where: str) -> None:
    """Cross-field rules that a single key's range cannot express."""
    if p.model.path == "organism" and p.task.name != "arith":
        raise UsageError(f"{where}: key 'model.path' = \"organism\" needs task.name = \"arith\"")
    if p.model.data_parallel_size > 1 and p.model.distributed_executor_backend == "ray":
        raise UsageError(f"{where}: key 'model.data_parallel_size' > 1 starts local replicas; with Ray "
                         f"use tensor_parallel_size / pipeline_parallel_size")
    if p.verify.method == "qe" and len(p.verify.qe_tokens) < 2:
        raise UsageError(f"{where}: key 'verify.qe_tokens' needs at least 2 score tokens")
    if p.train.epochs <= 0:
        raise UsageError(f"{where}: key 'train.epochs' must be > 0, got {p.train.epochs!r}")
    if isinstance(p.external.schedule, str):
        if p.external.schedule not in ("none", "early", "uniform", "late"):
            raise UsageError(f"{where}: key 'external.schedule' must be none, early, uniform, late "
                             f"or a list of shares, got {p.external.schedule!r}")
    else:
        shares = p.external.schedule
        if any(s < 0 for s in shares):
            raise UsageError(f"{where}: key 'external.schedule' has a negative share")
        if sum(shares) > 1 + 1e-9:
            raise UsageError(f"{where}: key 'external.schedule' shares sum to {sum(shares):g} > 1")
        if len(shares) > p.rounds:
            raise UsageError(f"{where}: key 'external.schedule' lists {len(shares)} shares "
                             f"but the run has {p.rounds} rounds")
    for key in ("tf_template", "qe_template"):
        template = getattr(p.verify, key)
        if "{prompt}" not in template or "{response}" not in template:
            raise UsageError(f"{where}: key 'verify.{key}' must contain {{prompt}} and {{response}}")
    if "{question}" not in p.task.prompt_template:
        raise UsageError(f"{where}: key 'task.prompt_template' must contain {{question}}")


# ---------------------------------------------------------------------------------------------
# loading

def profiles_dir() -> Path:
    """The bundled profiles (package data, so a wheel has them too); SILAB_PROFILES overrides."""
    override = os.environ.get("SILAB_PROFILES")
    return Path(override) if override else Path(str(resources.files("silab") / "profiles"))


def resolve_profile_path(name_or_path: str | None) -> Path:
    if name_or_path is None:
        name_or_path = "tiny"
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file() or os.sep in name_or_path:
        if not path.is_file():
            raise UsageError(f"{name_or_path}: profile file not found")
        return path
    path = profiles_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir().glob("*.toml")))
        raise UsageError(f"unknown profile '{name_or_path}' (known: {known}; or give a .toml path)")
    return path


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=value' -> (['a', 'b'], value); value is read as TOML, else taken as a bare string."""
    if "=" not in text:
        raise UsageError(f"--set {text}: expected KEY=VALUE, e.g. --set verify.sigma=0.7")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def load_profile(name_or_path: str | None = None, overrides: list[str] = ()) -> Profile:
    path = resolve_profile_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    profile = _build(Profile, data, str(path))
    return apply_overrides(profile, overrides, str(path))


def apply_overrides(profile: Profile, overrides, where: str = "--set") -> Profile:
    """Apply 'a.b=value' strings and re-validate the whole profile."""
    data = profile.to_dict()
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise UsageError(f"--set {text}: unknown key '{'.'.join(keys)}'")
            node = node[k]
        if keys[-1] not in node or isinstance(node[keys[-1]], dict):
            raise UsageError(f"--set {text}: unknown key '{'.'.join(keys)}'")
        node[keys[-1]] = value
    profile = _build(Profile, data, where if not overrides else "--set")
    _check_profile(profile, where)
    return profile


def profile_from_dict(data: dict, where: str) -> Profile:
    profile = _build(Profile, data, where)
    _check_profile(profile, where)
    return profile


def dump_toml(data: dict) -> str:
    """Write a profile dict as TOML (tables of scalars and lists only: all a profile holds)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        return "[" + ", ".join(value(x) for x in v) + "]"

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"
