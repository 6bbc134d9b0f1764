"""Profiles: TOML files validated into typed, frozen dataclasses.

A profile is the whole description of an experiment. Every key has a type, a doc line and, where it
matters, a range, choices or a registry of names; unknown keys are errors, so a typo never silently
falls back to a default. Each dataclass validates itself when it is constructed (`__post_init__`), so
a file, `--set a.b=value`, `--rounds`, `dataclasses.replace` and the lab's steering all go through
the same rules, and no code path holds an invalid profile. `silab profiles --keys` lists the keys.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from silab.config.rules import (ProfileError, Section, describe, field_types, option, registered, schedule_shares,
                                type_name)
from silab.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ModelConfig(Section):
    KEY = "model."
    path: str = option("organism", doc='"organism" (built offline), a local folder or a hub id')
    organism: str = option("tiny", choices=["tiny", "micro"], doc='organism size, when path = "organism"')
    backend: str = option("hf", names="silab.engine.backends:names",
                         doc="the runtime: a module of silab/engine/backends (hf: transformers; vllm: "
                             "vLLM samples and judges, peft trains)")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16", "auto"],
                       doc='weights\' dtype; "auto" = as the checkpoint stores them')
    device: str = option("auto", doc='"auto", "cpu", "cuda" or "cuda:N"')
    max_new_tokens: int = option(16, lo=1, doc="longest sampled answer, in tokens")
    trust_remote_code: bool = option(False, doc="let transformers run a hub model's own code")
    cache_dir: str = option("", doc="where the organism is built; empty = the user's cache dir")
    gpu_memory_utilization: float = option(0.6, lo=0.05, hi=0.99, doc="vLLM: the share of GPU memory it takes")
    max_model_len: int = option(4096, lo=64, doc="vLLM: longest prompt + answer, in tokens")
    tensor_parallel_size: int = option(1, lo=1, doc="vLLM: GPUs one replica is split over")
    data_parallel_size: int = option(1, lo=1, doc="vLLM replicas on separate GPUs of one box")
    pipeline_parallel_size: int = option(1, lo=1, doc="vLLM pipeline stages (multi-node: e.g. one per node)")
    distributed_executor_backend: str = option("", choices=["", "mp", "ray"],
                                              doc='vLLM executor: "" = vLLM decides, "ray" = multi-node')

    def check(self):
        if self.data_parallel_size > 1 and self.distributed_executor_backend == "ray":
            raise ProfileError("key 'model.data_parallel_size' > 1 starts local replicas; with Ray "
                               "use tensor_parallel_size / pipeline_parallel_size")


@dataclass(frozen=True)
class TaskConfig(Section):
    KEY = "task."
    name: str = option("arith", names="silab.tasks:task_names", doc="a registered task (silab/tasks)")
    source: str = option("", doc="hub dataset id; empty = the task's default")
    subset: str = option("", doc="hub dataset config name")
    train_files: list[str] = option([], doc="local jsonl/parquet/csv files for the train split")
    test_files: list[str] = option([], doc="local jsonl/parquet/csv files for the test split")
    train_split: str = option("train", doc="the hub split prompts (and few-shot examples) come from")
    test_split: str = option("test", doc="the hub split test items come from")
    n_prompts: int = option(64, lo=1, doc="self-improvement prompts per round")
    n_test: int = option(128, lo=1, doc="held-out test items")
    n_external: int = option(0, lo=0, doc="size of the external labelled pool M")
    prompt_template: str = option("{question}", doc="a question -> its prompt; must contain {question}")
    few_shot: int = option(0, lo=0, doc="solved train examples put before each question")
    chat: bool = option(False, doc="wrap prompts in the tokenizer's chat template")
    system_prompt: str = option("", doc="with chat: the system message")

    def check(self):
        if "{question}" not in self.prompt_template:
            raise ProfileError("key 'task.prompt_template' must contain {question}")


@dataclass(frozen=True)
class SamplingConfig(Section):
    KEY = "sampling."
    n_samples: int = option(16, lo=1, hi=1024, doc="answers sampled per prompt (N)")
    temperature: float = option(1.0, lo=0.0, doc="sampling temperature")
    top_p: float = option(1.0, lo=0.0, hi=1.0, doc="nucleus sampling: the probability mass kept")
    batch_size: int = option(16, lo=1, doc="prompts per generate call (x n_samples sequences)")
    test_samples: int = option(4, lo=1, doc="sampled answers per test item for test_acc")
    pass_k: int = option(0, lo=0, doc="0 = no pass@k; else samples per test item for pass@k")


@dataclass(frozen=True)
class VerifyConfig(Section):
    KEY = "verify."
    method: str = option("tf", names="silab.engine.verifiers:names",
                        doc="how the model judges its answers: tf (True/False), qe (a 1-5 score), ...")
    sigma: float = option(0.5, lo=0.0, hi=1.0, doc="verifier threshold: a sample passes with score >= sigma")
    tf_template: str = option("{prompt}{response}\nIs the answer above correct? Answer True or False.\nAnswer:",
                             doc="the tf judge's prompt (without task.chat); must contain {prompt} and {response}")
    tf_question: str = option("", doc="with task.chat: the judge's question; the template is built from the "
                             "tokenizer's chat template (tf_template is then unused)")
    true_token: str = option(" True", doc="the tf judge's word for correct")
    false_token: str = option(" False", doc="the tf judge's word for wrong")
    qe_template: str = option("{prompt}{response}\nRate the answer above from 1 (wrong) to 5 (correct).\nScore:",
                             doc="the qe judge's prompt (without task.chat); must contain {prompt} and {response}")
    qe_question: str = option("", doc="with task.chat: the quality judge's question (see tf_question)")
    qe_tokens: list[str] = option([" 1", " 2", " 3", " 4", " 5"], doc="the qe judge's score words, worst first (>= 2)")
    batch_size: int = option(64, lo=1, doc="judge prompts per forward pass")

    def check(self):
        if len(self.qe_tokens) < 2:
            raise ProfileError("key 'verify.qe_tokens' needs at least 2 score tokens")
        for key in ("tf_template", "qe_template"):
            template = getattr(self, key)
            if "{prompt}" not in template or "{response}" not in template:
                raise ProfileError(f"key 'verify.{key}' must contain {{prompt}} and {{response}}")


@dataclass(frozen=True)
class LoraConfig(Section):
    KEY = "lora."
    rank: int = option(16, lo=1, doc="LoRA rank r")
    alpha: float = option(32.0, lo=0.0, doc="LoRA alpha: the update is scaled by alpha / rank")
    dropout: float = option(0.0, lo=0.0, hi=1.0, doc="LoRA dropout")
    target_modules: list[str] = option(["all-linear"], doc='"all-linear" or the module names LoRA wraps')


@dataclass(frozen=True)
class TrainConfig(Section):
    KEY = "train."
    lr: float = option(1e-5, lo=0.0, hi=1.0, doc="learning rate")
    picks: str = option("refresh", choices=["refresh", "fixed"],
                       doc='"refresh": each round trains on the previous round\'s new picks (the outer clock, '
                           'rounds); "fixed": round 0\'s picks are the training set of one continuous '
                           'fine-tune, measured at checkpoints (the paper\'s figures: the inner clock, epochs)')
    epochs: float = option(1.0, gt=0.0, doc="training per round, in epochs of its training set; may be a "
                          "fraction (0.5: a checkpoint every half epoch)")
    batch_size: int = option(8, lo=1, doc="examples per forward pass")
    grad_accum: int = option(1, lo=1, doc="forward passes per optimiser step")
    weight_decay: float = option(0.0, lo=0.0, doc="AdamW weight decay")
    max_grad_norm: float = option(1.0, lo=0.0, doc="gradient clipping norm; 0 = no clipping")
    judge_rehearsal: bool = option(False, doc="also train on the model's own verdicts (keeps the judge)")


@dataclass(frozen=True)
class ExternalConfig(Section):
    KEY = "external."
    schedule: Union[str, list[float]] = option("none", doc="how the pool M is spent over rounds 1..T: "
                                              '"none", "early", "uniform", "late" or a list of shares')


@dataclass(frozen=True)
class Profile(Section):
    name: str = option("unnamed", doc="the profile's name; run folders are named after it")
    description: str = option("", doc="one line for `silab profiles`")
    seed: int = option(0, lo=0, doc="seeds the data split, sampling and training order")
    rounds: int = option(10, lo=0, doc="train this many times (measures rounds 0..rounds)")
    run_root: str = option("logs", doc="the folder new runs go in")
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    external: ExternalConfig = field(default_factory=ExternalConfig)

    def check(self):
        if self.model.path == "organism" and self.task.name != "arith":
            raise ProfileError("key 'model.path' = \"organism\" needs task.name = \"arith\"")
        try:
            schedule_shares(self.external.schedule, self.rounds)
        except ValueError as e:
            raise ProfileError(f"key 'external.schedule': {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def profile_from_dict(data: dict, where: str) -> Profile:
    """A profile from a dict (a TOML file's tables); a broken rule is one line starting with `where`."""
    try:
        return Profile.from_dict(data)
    except ProfileError as e:
        raise ProfileError(f"{where}: {e}") from None


def load_profile(name_or_path: str | None = None, overrides: list[str] = (), rounds: int | None = None) -> Profile:
    """A bundled profile or a .toml file, then `--set` overrides, then `--rounds`, each step validated
    as a whole profile (a rule it breaks names the step)."""
    path = resolve_profile_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    profile = profile_from_dict(data, str(path))
    profile = apply_overrides(profile, overrides) if overrides else profile
    return profile if rounds is None else apply_overrides(profile, [f"rounds={rounds}"], "--rounds")


def apply_overrides(profile: Profile, overrides, where: str = "--set") -> Profile:
    """The profile with 'a.b=value' strings applied, built (so validated) as a whole: `where` names
    the flag they came from in messages (--set, --rounds)."""
    data = profile.to_dict()
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise UsageError(f"{where} {text}: unknown key '{'.'.join(keys)}'")
            node = node[k]
        if keys[-1] not in node or isinstance(node[keys[-1]], dict):
            raise UsageError(f"{where} {text}: unknown key '{'.'.join(keys)}'")
        node[keys[-1]] = value
    return profile_from_dict(data, where)


# ---------------------------------------------------------------------------------------------
# showing keys and writing profiles

@dataclass(frozen=True)
class Key:
    """One profile key as `silab profiles --keys` shows it."""
    name: str       # dotted
    type: str       # in words
    default: Any
    allowed: str    # the range, choices or registered names in words; "" = any value of the type
    doc: str
    lo: float | None = None
    hi: float | None = None


def keys(cls=Profile, prefix: str = "") -> list[Key]:
    """Every key of a profile, in file order."""
    out = []
    for f in dataclasses.fields(cls):
        tp = field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += keys(tp, prefix + f.name + ".")
            continue
        m = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out.append(Key(prefix + f.name, type_name(tp), default, describe(m), m["doc"], m["lo"], m["hi"]))
    return out


def toml_value(v) -> str:
    """A scalar or a list as TOML writes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def dump_toml(data: dict) -> str:
    """Write a profile dict as TOML (tables of scalars and lists only: all a profile holds)."""
    top = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"
