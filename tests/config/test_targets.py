"""A user's model and data named in a config: paths anchored to the file that names them, the
recorded content hashes, the config hash they enter, switching between a user's model and a
built-in one, and the one-line errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config, validate_config
from mlp_lab.config.targets import parse_target
from mlp_lab.core.errors import ConfigError
from mlp_lab.studies.ablation import load_study

MODEL = "import torch\n\n\nclass Net(torch.nn.Module):\n    pass\n"


def project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(MODEL)
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,x\n3,4,y\n")
    (tmp_path / "c.yaml").write_text(
        "model:\n  target: models/net.py:Net\n  args: {width: 8}\n"
        "data:\n  source: {kind: csv, path: table.csv, label: label}\n"
    )
    return tmp_path / "c.yaml"


def test_paths_are_relative_to_the_config_and_the_hashes_are_recorded(tmp_path, monkeypatch):
    config = project(tmp_path)
    monkeypatch.chdir("/")  # not the config's folder: the paths still resolve next to it
    cfg = load_config(config)
    assert cfg.model.kind == "user"
    assert cfg.model.target == f"{tmp_path}/models/net.py:Net"
    assert cfg.model.parsed.label == "net.py:Net"
    assert cfg.model.args == {"width": 8}
    assert len(cfg.model.code_sha256) == 64
    assert cfg.data.source.path == str(tmp_path / "table.csv")
    assert cfg.data.name == "table"
    assert len(cfg.data.source.fingerprint) == 64


def test_the_hash_follows_the_content_not_the_place(tmp_path):
    first = config_hash(load_config(project(tmp_path / "a")) if (tmp_path / "a").mkdir() is None else None)
    moved = config_hash(load_config(project(tmp_path / "b")) if (tmp_path / "b").mkdir() is None else None)
    assert first == moved  # the same code and data elsewhere: the same runs
    (tmp_path / "b" / "models" / "net.py").write_text(MODEL + "# edited\n")
    edited = config_hash(load_config(tmp_path / "b" / "c.yaml"))
    assert edited != first  # edited code retrains instead of pooling
    (tmp_path / "b" / "models" / "net.py").write_text(MODEL)
    (tmp_path / "b" / "table.csv").write_text("a,b,label\n1,2,x\n3,5,y\n")
    assert config_hash(load_config(tmp_path / "b" / "c.yaml")) not in (first, edited)
    renamed = validate_config(
        {"model": load_config(tmp_path / "a" / "c.yaml").model.model_dump(), "data": {"dataset": "mnist"}}, "x"
    )
    assert config_hash(renamed) != first


def test_a_recorded_hash_is_kept_not_recomputed(tmp_path):
    cfg = load_config(project(tmp_path))
    recorded = cfg.model_dump(mode="json")
    (tmp_path / "models" / "net.py").write_text(MODEL + "# edited after the run\n")
    again = validate_config(recorded, "runs/x/config.yaml", machine=False)
    # Reading a run's record keeps the hash of the code it ran (loading its model checks it).
    assert again.model.code_sha256 == cfg.model.code_sha256
    assert config_hash(again) == config_hash(cfg)


def test_set_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    config = project(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(tmp_path / "models" / "net.py", other / "other.py")
    monkeypatch.chdir(other)
    cfg = load_config(config, ["model.target=other.py:Net"])
    assert cfg.model.target == f"{other}/other.py:Net"


def test_module_targets_need_no_file(tmp_path):
    cfg = validate_config({"model": {"target": "torch.nn:Linear", "args": {}}}, "c.yaml")
    assert cfg.model.parsed.module == "torch.nn" and cfg.model.parsed.label == "torch.nn:Linear"
    assert len(cfg.model.code_sha256) == 64


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"target": "nope.py:Net"},
            "c.yaml: model.target: {tmp}/nope.py: no such file (the target is relative to the config that names it)",
        ),
        (
            {"target": "Net"},
            "c.yaml: model.target: 'Net' is not a target: write FILE.py:NAME (e.g. models/my_mlp.py:ParameterizedMLP) "
            "or package.module:NAME (e.g. torchvision.models:resnet18)",
        ),
        (
            {"target": "no_such_module_here:Net"},
            "c.yaml: model.target: module 'no_such_module_here' cannot be found: install it, or name its file (FILE.py:NAME)",
        ),
        (
            {"target": "models/net.py:Net", "widht": 3},
            "c.yaml: model: unknown key 'widht': a user's model takes target, args, input, code_sha256; "
            "its own keyword arguments go under args (model.args.widht)",
        ),
        (
            {"kind": "mlp", "target": "models/net.py:Net"},
            "c.yaml: model.target: not a key of this model.kind; user has it (model.kind: user)",
        ),
    ],
)
def test_a_bad_target_is_one_line(tmp_path, model, message):
    project(tmp_path)
    (tmp_path / "c.yaml").write_text("")
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": model}))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "c.yaml")
    assert exc.value.errors == [f"{tmp_path / 'c.yaml'}: " + message.format(tmp=tmp_path).split(": ", 1)[1]]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"kind": "csv", "path": "missing.csv"},
            "data.source.path: {tmp}/missing.csv: no such file or folder (relative paths start at the config that names them)",
        ),
        (
            {"kind": "folder", "path": "table.csv"},
            "data.source.path: {tmp}/table.csv: not a folder (a folder source holds one subfolder of images per class)",
        ),
        (
            {"kind": "csv", "path": "table.csv", "lable": "x"},
            "data.source.lable: unknown key, did you mean 'data.source.label'?",
        ),
        (
            {"kind": "parquet", "path": "table.csv"},
            "data.source: kind 'parquet' is not one of 'folder', 'npz', 'csv', 'python', 'torchvision'",
        ),
    ],
)
def test_a_bad_source_is_one_line(tmp_path, source, message):
    import yaml

    project(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"source": source}}))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "c.yaml")
    expected = f"{tmp_path / 'c.yaml'}: " + message.format(tmp=tmp_path)
    assert len(exc.value.errors) == 1
    assert exc.value.errors[0] == expected or (
        expected.endswith("...") and exc.value.errors[0].startswith(expected[:-3])
    )


def test_a_dataset_and_a_source_together_are_refused(tmp_path):
    project(tmp_path)
    (tmp_path / "c.yaml").write_text("data:\n  dataset: mnist\n  source: {kind: csv, path: table.csv}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "c.yaml")
    assert exc.value.errors == [
        f"{tmp_path / 'c.yaml'}: data: give data.dataset (a registered dataset) or data.source (your own data), not both"
    ]


def test_study_arms_switch_between_a_user_model_and_a_built_in_one(tmp_path):
    config = project(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.yaml").write_text(
        "base: ../c.yaml\nfactor: model\nreference: mine\nseeds: [0]\n"
        "arms:\n  mine: {}\n  wider: {model.args.width: 16}\n"
        "  mlp: {model: {kind: mlp, hidden_sizes: [32]}}\n"
        "  other: {model: {target: ../models/net.py:Net, args: {width: 4}}}\n"
    )
    study = load_study(tmp_path / "studies" / "s.yaml")
    arms = {arm.name: arm.config.model for arm in study.arms}
    assert arms["mine"].args == {"width": 8} and arms["wider"].args == {"width": 16}
    assert arms["mlp"].kind == "mlp" and arms["mlp"].hidden_sizes == [32]  # the user's args dropped
    # An arm's target is relative to the study file; the base's args are not merged into another model.
    assert arms["other"].target == f"{tmp_path}/models/net.py:Net" and arms["other"].args == {"width": 4}
    assert len({config_hash(arm.config) for arm in study.arms}) == 4
    # A base that writes its kind (every shipped config does) switches to a target just the same.
    (tmp_path / "mlp.yaml").write_text("model: {kind: mlp, hidden_sizes: [16]}\n")
    (tmp_path / "studies" / "t.yaml").write_text(
        "base: ../mlp.yaml\nfactor: model\nreference: mlp\nseeds: [0]\n"
        "arms:\n  mlp: {}\n  mine: {model: {target: ../models/net.py:Net}}\n"
    )
    switched = {arm.name: arm.config.model for arm in load_study(tmp_path / "studies" / "t.yaml").arms}
    assert switched["mlp"].hidden_sizes == [16] and switched["mine"].kind == "user" and switched["mine"].args == {}
    assert config_hash(study.arms[0].config) == config_hash(load_config(config))


def test_parse_target_forms():
    assert parse_target("a/b.py:Net", Path("/x")).file == Path("/x/a/b.py")
    assert parse_target("/abs/b.py:Net").file == Path("/abs/b.py")
    assert parse_target("pkg.mod:make").module == "pkg.mod"
    for bad in ("b.py", "b.py:", ":Net", "b.py:not-a-name", "pkg..mod:X"):
        with pytest.raises(ValueError):
            parse_target(bad)
    assert os.sep == "/"  # the forms above are POSIX paths
