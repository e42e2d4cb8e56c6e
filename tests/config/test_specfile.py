"""The one loader of study and search files: names resolved with a did-you-mean, every
problem of a file reported together, the base config read with the file's overrides and --set."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from mlp_lab.config.specfile import read_spec_file, resolve_spec_path
from mlp_lab.core.errors import ConfigError, MLPLabError


class ToyFile(BaseModel):
    """A spec file schema with what specfile relies on (base, overrides) and one field of its own."""

    model_config = ConfigDict(extra="forbid")

    base: str
    overrides: dict[str, Any] = {}
    seeds: list[int] = [0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_name_resolves_in_its_directory_and_a_path_as_it_is(tmp_path):
    made = write(tmp_path / "toys" / "dropout.yaml", "base: b.yaml\n")
    assert resolve_spec_path("dropout", tmp_path / "toys", "toy") == made
    assert resolve_spec_path(tmp_path / "elsewhere.yaml", tmp_path / "toys", "toy") == tmp_path / "elsewhere.yaml"


def test_an_unknown_name_gets_a_did_you_mean_and_the_known_names(tmp_path):
    write(tmp_path / "toys" / "dropout.yaml", "base: b.yaml\n")
    write(tmp_path / "toys" / "width.yaml", "base: b.yaml\n")
    with pytest.raises(MLPLabError) as info:
        resolve_spec_path("dropuot", tmp_path / "toys", "toy")
    assert str(info.value) == (
        f"{tmp_path / 'toys' / 'dropuot.yaml'}: no toy named 'dropuot' (did you mean 'dropout'?); known: dropout, width"
    )
    with pytest.raises(MLPLabError, match=r"no toy named 'nope'; no toy files in .*empty/$"):
        resolve_spec_path("nope", tmp_path / "empty", "toy")


def test_schema_errors_raw_checks_and_an_unreadable_base_are_reported_together(tmp_path):
    path = write(tmp_path / "toys" / "t.yaml", "base: ../gone.yaml\nseedz: [1]\n")
    with pytest.raises(ConfigError) as info:
        read_spec_file(
            "t", tmp_path / "toys", "toy", ToyFile, raw_checks=lambda p, raw: [f"{p}: own check saw {sorted(raw)}"]
        )
    errors = info.value.errors
    assert errors[0] == f"{path}: seedz: unknown key, did you mean 'seeds'?"
    assert errors[1] == f"{path}: own check saw ['base', 'seedz']"
    assert errors[2].startswith(f"{path}: base: ") and "gone.yaml" in errors[2] and len(errors) == 3


def test_the_base_gets_the_file_overrides_then_set_and_set_problems_are_collected(tmp_path):
    write(tmp_path / "base.yaml", "name: b\ntrain: {epochs: 5, batch_size: 32}\n")
    path = write(tmp_path / "toys" / "t.yaml", "base: ../base.yaml\noverrides: {train.epochs: 3, model.dropout: 0.1}\n")
    loaded = read_spec_file(
        path, tmp_path / "toys", "toy", ToyFile, set_options=["train.epochs=2", "epochs", "name.x=1"]
    )
    assert loaded.path == path and loaded.spec.seeds == [0]
    assert loaded.base == {"name": "b", "train": {"epochs": 2, "batch_size": 32}, "model": {"dropout": 0.1}}
    assert loaded.sources == {"train.epochs": "--set train.epochs=2"}
    assert [e.split(":")[0] for e in loaded.errors] == ["--set epochs", "--set name.x=1"]


def test_a_bad_override_key_names_the_file_and_the_key(tmp_path):
    write(tmp_path / "base.yaml", "name: b\n")
    path = write(tmp_path / "toys" / "t.yaml", "base: ../base.yaml\noverrides: {name.x: 3}\n")
    loaded = read_spec_file(path, tmp_path / "toys", "toy", ToyFile)
    assert loaded.errors == [f"{path}: overrides.name.x: name: is a str, so it has no key 'x'"]
