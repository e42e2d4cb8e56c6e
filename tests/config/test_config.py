"""Config schema: defaults, overrides, and errors that name the file and the dotted key."""

from pathlib import Path

import pytest

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config
from mlp_lab.config.overrides import deep_merge, flatten, parse_override
from mlp_lab.config.schema import Config
from mlp_lab.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value.errors


def test_defaults_fill_missing_sections(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\n"))
    assert cfg.train.optimizer.name == "adam"
    assert cfg.train.early_stopping.patience is None
    assert cfg.train.restore_best is True
    assert cfg.output.dir == "runs" and cfg.output.tensorboard is True


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_says_how_to_run(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and f"mlp-lab run configs/{path.name}" in first


@pytest.mark.parametrize("name", ["baseline.yaml", "plain.yaml", "mnist_keras.yaml"])
def test_reference_configs_spell_out_every_field(name):
    import yaml

    from mlp_lab.config.model_sections import CNNConfig

    raw = yaml.safe_load((REPO / "configs" / name).read_text())
    # Every key of both built-in kinds: these MLP configs list a CNN's conv blocks too (an MLP
    # ignores them), so a reader switching model.kind finds every key spelled out.
    assert set(flatten(raw)) == set(flatten(Config(model=CNNConfig()).model_dump()))


def test_overrides_parse_yaml_values_and_create_sections(tmp_path):
    path = write(tmp_path, "name: x\n")
    cfg = load_config(
        path,
        [
            "train.optimizer.lr=0.01",
            "model.hidden_sizes=[512,256]",
            "train.early_stopping.patience=3",
            "model.batch_norm=true",
        ],
    )
    assert cfg.train.optimizer.lr == 0.01
    assert cfg.model.hidden_sizes == [512, 256]
    assert cfg.train.early_stopping.patience == 3
    assert cfg.model.batch_norm is True


def test_all_errors_are_reported_at_once_with_file_and_key(tmp_path):
    path = write(
        tmp_path, "model:\n  dropout: 1.0\n  hidden_sizes: [0]\ntrain:\n  epochs: 0\n  optimizer:\n    lr: -1\n"
    )
    errors = errors_of(path)
    keys = ["model.dropout", "model.hidden_sizes[0]", "train.epochs", "train.optimizer.lr"]
    assert len(errors) == len(keys)
    for key in keys:
        assert any(e.startswith(f"{path}: {key}: ") for e in errors), (key, errors)


def test_unknown_key_suggests_the_close_one(tmp_path):
    errors = errors_of(write(tmp_path, "train:\n  optimiser:\n    lr: 0.1\n"))
    assert errors == [f"{tmp_path / 'c.yaml'}: train.optimiser: unknown key, did you mean 'train.optimizer'?"]


def test_override_errors_name_the_override(tmp_path):
    path = write(tmp_path, "name: x\n")
    errors = errors_of(path, ["train.optimizer.lr=-0.5", "train.optimizer.name=rmsprop", "nonsense"])
    assert any(e.startswith("--set nonsense") for e in errors)
    assert any(e.startswith("--set train.optimizer.lr=-0.5: train.optimizer.lr:") for e in errors)
    assert any("train.optimizer.name" in e and "rmsprop" in e for e in errors)
    assert len(errors) == 3


def test_override_into_a_scalar_is_an_error(tmp_path):
    errors = errors_of(write(tmp_path, "seed: 1\n"), ["seed.value=3"])
    assert errors == ["--set seed.value=3: seed: is a int, so it has no key 'value'"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("model:\n  hidden_sizes: [1, 2\n", "line 2, column 17"),
        ("a: 1\n  b: 2\n", "line 2"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, text, fragment):
    errors = errors_of(write(tmp_path, text))
    assert len(errors) == 1 and fragment in errors[0] and str(tmp_path / "c.yaml") in errors[0]


def test_missing_file_and_directory(tmp_path):
    assert "file not found" in errors_of(tmp_path / "nope.yaml")[0]
    assert "is a directory" in errors_of(tmp_path)[0]


def test_cross_field_checks(tmp_path):
    path = write(
        tmp_path,
        "train:\n  epochs: 3\n  scheduler: {name: cosine, warmup_epochs: 3}\n"
        "  optimizer: {name: adam, nesterov: true}\n",
    )
    errors = errors_of(path)
    assert any("train.scheduler.warmup_epochs" in e for e in errors)
    assert any("train.optimizer.nesterov" in e for e in errors)


def test_parse_override_rejects_malformed():
    for text in ["=3", "a..b=1", "noequals", "a b=1"]:
        with pytest.raises(ValueError):
            parse_override(text)
    assert parse_override("a.b=") == ("a.b", None)


def test_hash_ignores_name_and_output_but_not_training_settings():
    base = Config()
    assert config_hash(base) == config_hash(base.model_copy(update={"name": "other"}))
    changed = Config.model_validate({"train": {"epochs": 21}})
    assert config_hash(base) != config_hash(changed)


def test_deep_merge_merges_nested_mappings():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}, "d": 1}


def test_the_geometry_counts_the_parameters_the_built_model_has():
    from mlp_lab.config.datasets import DATASETS
    from mlp_lab.config.model_sections import MLPConfig
    from mlp_lab.models.registry import build_model

    for spec in DATASETS.values():
        for model in (MLPConfig(hidden_sizes=[]), MLPConfig(hidden_sizes=[64, 32], batch_norm=True), MLPConfig()):
            built = build_model(model, spec.image_shape, spec.num_classes)
            geometry = model.geometry(spec.image_shape, spec.num_classes)
            assert geometry.parameters == built.num_parameters() and geometry.features == spec.in_features


def test_normalise_choices_of_the_cli_are_predicts():
    from mlp_lab.cli.inspect import Normalise
    from mlp_lab.inspect.predict import NORMALISATIONS

    assert tuple(n.value for n in Normalise) == NORMALISATIONS


def test_a_model_too_large_for_memory_is_refused_naming_its_parameter_count(tmp_path):
    from mlp_lab.config.load import load_config
    from mlp_lab.core.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("model: {hidden_sizes: [1000000000000]}\n")
    with pytest.raises(ConfigError, match=r"795,000,000,000,010 parameters need at least .* GiB to train"):
        load_config(path)


# config_hash of shipped configs under numerics version 4, computed with the code at c65ddbd (one
# flat ModelConfig, hashing deleting an MLP's kind and conv) before the per-kind model sections:
# the sections must leave every hash as it was, or finished runs would be trained again. An MLP
# that lists the conv blocks (baseline), one that does not (mnist), a CNN (fashion_cnn, lenet5).
HASHES_BEFORE_MODEL_SECTIONS = {
    "baseline": "b2f81186f0e38be7",
    "mnist": "f75f558d3cbcaab0",
    "fashion_cnn": "d6535a429549ea1a",
    "mnist_lenet5": "d546781e601c1433",
}


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE_MODEL_SECTIONS))
def test_the_model_sections_leave_the_shipped_config_hashes_as_they_were(name, monkeypatch):
    monkeypatch.setattr("mlp_lab.config.engines.NUMERICS_VERSIONS", {"autograd": 4, "hand": 4})
    assert config_hash(load_config(REPO / "configs" / f"{name}.yaml")) == HASHES_BEFORE_MODEL_SECTIONS[name]


def test_a_conv_section_is_ignored_by_an_mlp_and_a_wrong_key_in_it_is_still_named():
    from mlp_lab.config.load import validate_config

    cnn = {"kind": "cnn", "conv": {"channels": [4], "padding": 0}, "hidden_sizes": [8]}
    switched = validate_config({"model": {**cnn, "kind": "mlp"}}, "c.yaml")  # e.g. --set model.kind=mlp
    assert switched.model.kind == "mlp" and "conv" not in switched.model_dump()["model"]
    assert config_hash(switched) == config_hash(validate_config({"model": {"hidden_sizes": [8]}}, "c.yaml"))
    with pytest.raises(ConfigError) as exc:
        validate_config({"model": {"kind": "mlp", "conv": {"chanels": [4]}}}, "c.yaml")
    assert exc.value.errors == ["c.yaml: model.conv.chanels: unknown key, did you mean 'model.conv.channels'?"]
    with pytest.raises(ConfigError) as exc:
        validate_config({"model": {**cnn, "widht": 3}}, "c.yaml")
    assert exc.value.errors == [
        "c.yaml: model.widht: unknown key (known: kind, conv, hidden_sizes, activation, batch_norm, dropout, "
        "input_dropout)"
    ]
    with pytest.raises(ConfigError) as exc:
        validate_config({"model": {"kind": "rnn"}}, "c.yaml")
    assert exc.value.errors == ["c.yaml: model.kind: Input should be 'mlp' or 'cnn' or 'user' (got 'rnn')"]
