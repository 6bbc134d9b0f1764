"""Profiles: every bad input is one line naming the file, the key and what was expected."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from silab.config import (ModelConfig, Profile, TaskConfig, TrainConfig, VerifyConfig, apply_overrides, dump_toml,
                          keys, load_profile, profiles_dir, registered, schedule_shares, tomllib)
from silab.errors import UsageError
from silab.protocol import SCHEDULES, SETTINGS


def write(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


def test_default_profile_is_tiny_on_the_organism():
    p = load_profile()
    assert p.name == "tiny" and p.model.path == "organism" and p.task.name == "arith"


@pytest.mark.parametrize("text, fragment", [
    ("bogus = 1", "unknown key 'bogus'"),
    ("[sampling]\nn_sample = 4", "unknown key 'sampling.n_sample'"),
    ("[sampling]\nn_samples = 'many'", "'sampling.n_samples' must be an integer"),
    ("[sampling]\nn_samples = 0", "'sampling.n_samples' must be >= 1"),
    ("[verify]\nsigma = 1.5", "'verify.sigma' must be <= 1.0"),
    ("[verify]\nsigma = -0.1", "'verify.sigma' must be >= 0.0"),
    ("rounds = -1", "'rounds' must be >= 0"),
    ("[verify]\nmethod = 'vote'", "'verify.method' must be one of tf, qe"),
    ("[train]\nepochs = 0", "'train.epochs' must be > 0"),
    ("[train]\nlr = true", "'train.lr' must be a number"),
    ("model = 3", "'model' must be a table"),
    ("[external]\nschedule = [0.5, -0.1]", "negative share"),
    ("[external]\nschedule = [0.7, 0.6]", "sum to 1.3 > 1"),
    ("rounds = 2\n[external]\nschedule = [0.2, 0.2, 0.2]", "lists 3 shares but the run has 2 rounds"),
    ("[verify]\ntf_template = 'no slots'", "must contain {prompt} and {response}"),
    ("x = = 1", "not valid TOML"),
])
def test_bad_profiles_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_profile(path)
    assert fragment in str(err.value)
    assert path in str(err.value) or "toml" in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_missing_profile_file_and_unknown_name(tmp_path):
    with pytest.raises(UsageError, match="profile file not found"):
        load_profile(str(tmp_path / "nope.toml"))
    with pytest.raises(UsageError, match="unknown profile 'nope'.*tiny"):
        load_profile("nope")


def test_overrides_are_validated_like_the_file():
    p = load_profile("tiny", ["verify.sigma=0.7", "sampling.n_samples=8", "model.path=some/hub-id"])
    assert (p.verify.sigma, p.sampling.n_samples, p.model.path) == (0.7, 8, "some/hub-id")
    with pytest.raises(UsageError, match="'verify.sigma' must be <= 1.0"):
        load_profile("tiny", ["verify.sigma=2"])
    with pytest.raises(UsageError, match="unknown key 'verify.sigmaa'"):
        load_profile("tiny", ["verify.sigmaa=0.2"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        load_profile("tiny", ["verify.sigma"])


def test_int_is_accepted_where_a_float_is_expected_but_not_bool():
    p = apply_overrides(Profile(), ["train.lr=1"])
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)
    with pytest.raises(UsageError):
        apply_overrides(Profile(), ["sampling.n_samples=true"])


def test_dump_toml_round_trips_every_bundled_profile():
    for path in profiles_dir().glob("*.toml"):
        p = load_profile(str(path))
        again = tomllib.loads(dump_toml(p.to_dict()))
        assert again == p.to_dict(), path.name


def test_a_profile_name_is_not_mistaken_for_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # e.g. a run folder called tiny
    assert load_profile("tiny").name == "tiny"


# --- every construction validates ----------------------------------------------------------

@pytest.mark.parametrize("build, fragment", [
    (lambda: Profile(rounds=-1), "key 'rounds' must be >= 0"),
    (lambda: VerifyConfig(sigma=2), "key 'verify.sigma' must be <= 1.0"),
    (lambda: TaskConfig(n_prompts="64"), "key 'task.n_prompts' must be an integer"),
    (lambda: TrainConfig(epochs=0), "key 'train.epochs' must be > 0"),
    (lambda: Profile(model={"backend": "tpu"}), "key 'model.backend' must be one of hf, vllm"),
    (lambda: Profile(model={"bakend": "hf"}), "unknown key 'model.bakend'"),
    (lambda: replace(load_profile("tiny", ["external.schedule=[0.2, 0.2, 0.2]"]), rounds=2),
     "key 'external.schedule': the schedule lists 3 shares but the run has 2 rounds"),
    (lambda: Profile(model=ModelConfig(path="organism"), task=TaskConfig(name="gsm8k")), "needs task.name"),
])
def test_direct_construction_and_replace_validate_like_a_file(build, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)):
        build()


def test_a_profile_is_frozen_and_ints_become_floats_where_a_number_is_expected():
    p = Profile(train=TrainConfig(lr=1), verify={"sigma": 1})
    assert isinstance(p.train.lr, float) and isinstance(p.verify.sigma, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rounds = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.verify.sigma = 0.7


def test_rounds_goes_through_construction_and_the_message_names_the_flag():
    assert load_profile("tiny", ["external.schedule=[0.5, 0.5]"], rounds=2).rounds == 2
    with pytest.raises(UsageError, match=r"^--rounds: key 'external\.schedule'.*3 shares but the run has 1"):
        load_profile("tiny", ["external.schedule=[0.2, 0.2, 0.2]"], rounds=1)
    with pytest.raises(UsageError, match=r"^--rounds: key 'rounds' must be >= 0, got -1"):
        load_profile("tiny", rounds=-1)


# --- registries ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, registry", [
    ("task.name", "silab.tasks:task_names"),
    ("model.backend", "silab.engine.backends:names"),
    ("verify.method", "silab.engine.verifiers:names"),
])
def test_registered_names_are_read_from_their_registry_at_construction(key, registry):
    known = registered(registry)
    assert known and {k.name: k for k in keys()}[key].allowed == "one of " + ", ".join(known)
    with pytest.raises(UsageError, match=f"key '{key}' must be one of {', '.join(known)}, got 'nope'"):
        apply_overrides(Profile(), [f"{key}=nope", "model.path=some/hub-id"])


def test_a_name_a_registry_adds_is_accepted_without_touching_the_config(monkeypatch):
    from silab import tasks
    monkeypatch.setitem(tasks.REGISTRY, "copying", ("silab.tasks.arith", "ArithTask"))
    assert load_profile("tiny", ["task.name=copying", "model.path=some/hub-id"]).task.name == "copying"


def test_the_config_imports_no_task_or_engine_module_until_a_profile_is_built():
    code = ("import sys, silab.config; assert not [m for m in sys.modules if m.startswith(('silab.tasks', "
            "'silab.engine', 'torch'))]; silab.config.Profile(); "
            "assert 'torch' not in sys.modules and 'silab.engine.backends' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the keys, their docs and the protocol's ranges -----------------------------------------

def test_every_key_has_a_doc_and_a_type():
    listed = keys()
    assert len(listed) == len({k.name for k in listed}) > 50
    assert all(k.doc and k.type for k in listed), [k.name for k in listed if not k.doc]
    names = {k.name for k in listed}
    flat = {f"{s}.{k}" if isinstance(v, dict) else s for s, v in Profile().to_dict().items()
            for k in (v if isinstance(v, dict) else [None])}
    assert names == flat


def test_the_settings_the_lab_steers_have_the_profiles_ranges():
    by_name = {k.name: k for k in keys()}
    for setting in SETTINGS.values():
        key = by_name[setting.key]
        assert (setting.lo, setting.hi) == (key.lo, key.hi), setting.key
        assert key.type == {int: "an integer", float: "a number"}[setting.type]


# --- the external-data schedule -------------------------------------------------------------

def test_schedule_shares_spends_the_pool_as_each_name_says():
    assert schedule_shares("early", 4) == [1.0, 0.0, 0.0, 0.0]
    assert schedule_shares("late", 4) == [0.0, 0.0, 0.0, 1.0]
    assert schedule_shares("uniform", 4) == [0.25] * 4
    assert schedule_shares("none", 3) == [0.0] * 3 and schedule_shares("early", 0) == []
    assert schedule_shares([0.5, 0.25], 3) == [0.5, 0.25, 0.0]
    for name in SCHEDULES:   # every name the protocol lets the lab send is a valid profile value
        assert load_profile("tiny", [f"external.schedule={name}"]).external.schedule == name


@pytest.mark.parametrize("schedule, says", [
    ([0.5, -0.1], "negative share"), ([0.7, 0.6], "sum to 1.3 > 1"), ([True], "numbers"),
    ([0.1, float("inf")], "finite"), ("sometimes", "must be none, early, uniform, late or a list"),
])
def test_schedule_shares_refuses_what_cannot_be_spent(schedule, says):
    with pytest.raises(ValueError, match=says):
        schedule_shares(schedule, 4)
