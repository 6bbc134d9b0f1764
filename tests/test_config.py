"""Profiles: every bad input is one line naming the file, the key and what was expected."""
from __future__ import annotations

import pytest

from silab.config import Profile, apply_overrides, dump_toml, load_profile, profiles_dir, tomllib
from silab.errors import UsageError


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
