"""A user's own model (`model.target`, `mlp_lab.models.user`): what the target is called with, the
wrapper the trainer uses, each one-line error, the layer table with torch's MACs, and the verbs
(validate, summary, run, resume, evaluate, a changed file) on the tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_resumes_identically
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import config_to_dict
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.usercode import CodeChanged, UserCodeError, call_user_code, sha256_of
from mlp_lab.inspect.analysis import model_summary
from mlp_lab.models.registry import build_model, layer_table
from mlp_lab.models.user import UserNetwork

runner = CliRunner()

MODELS = """
import torch
from torch import nn


class ParameterizedMLP(nn.Module):
    def __init__(self, in_features, num_classes, hidden_sizes=(16,), batch_norm=False):
        super().__init__()
        layers, width = [], in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), *([nn.BatchNorm1d(size)] if batch_norm else []), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.body(x)


class SmallCNN(nn.Module):
    def __init__(self, in_channels, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Linear(4 * h * w, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class OwnPenalty(ParameterizedMLP):
    def penalized_weights(self):
        return [self.body[0].weight]


def linear(in_features, num_classes):
    return nn.Linear(in_features, num_classes)


def anything(**kwargs):
    assert not kwargs, kwargs
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))


def needs_depth(in_features, num_classes, depth):
    return nn.Linear(in_features, num_classes)


def not_a_module(num_classes):
    return {"classes": num_classes}


def five_outputs(in_features):
    return nn.Linear(in_features, 5)


class Broken(nn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        if x.abs().sum() > 0:
            raise ValueError("negative pixels are not allowed here")
        return self.fc(x)
"""


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "my_models.py"
    path.parent.mkdir()
    path.write_text(MODELS)
    return path


@pytest.fixture
def user_config(tiny_config, models_file):
    """The tiny synthetic config (MNIST-shaped, 28x28, 10 classes) with a user's model."""

    def make(name: str = "ParameterizedMLP", args=None, epochs: int = 2, **model):
        raw = config_to_dict(tiny_config(train={"epochs": epochs, "batch_size": 32, "device": "cpu"}))
        raw["model"] = {"target": f"{models_file}:{name}", "args": args or {}, **model}
        return validate_config(raw, "tiny.yaml")

    return make


def build(cfg) -> UserNetwork:
    return build_model(cfg.model, (1, 28, 28), 10)


def test_the_target_gets_the_sizes_its_signature_names_and_flat_rows(user_config):
    net = build(user_config(args={"hidden_sizes": [8]}))
    assert isinstance(net, UserNetwork) and net.example_shape == (784,)
    body = net.module.body
    assert (body[0].in_features, body[0].out_features, body[-1].out_features) == (784, 8, 10)
    assert net(torch.zeros(3, 784)).shape == (3, 10) and net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    # Checkpoints hold the user's own keys, which load into the user's class without mlp-lab.
    assert (
        list(net.state_dict())
        == list(net.module.state_dict())
        == [
            "body.0.weight",
            "body.0.bias",
            "body.2.weight",
            "body.2.bias",
        ]
    )
    fresh = type(net.module)(784, 10, hidden_sizes=[8])
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(torch.ones(2, 784)), net(torch.ones(2, 784)))
    assert net.num_parameters() == 784 * 8 + 8 + 8 * 10 + 10


def test_a_model_asking_for_channels_gets_images(user_config):
    net = build(user_config("SmallCNN"))
    assert net.example_shape == (1, 28, 28) and net.module.conv.in_channels == 1
    assert net(torch.zeros(2, 784)).shape == (2, 10)
    assert build(user_config("SmallCNN", input="images")).example_shape == (1, 28, 28)


def test_a_table_is_flat_and_told_its_feature_count(user_config):
    with pytest.raises(UserCodeError, match=r"SmallCNN.forward: .*my_models.py:\d+: RuntimeError: Expected 3D"):
        build(user_config("SmallCNN", input="flat"))
    net = build_model(user_config("linear").model, (30, 1, 1), 2)
    assert net.example_shape == (30,) and net.module.in_features == 30


def test_a_library_class_by_module_and_its_failure_without_user_frames(tiny_config):
    raw = config_to_dict(tiny_config())
    raw["model"] = {"target": "torch.nn:Conv2d", "args": {"out_channels": 10, "kernel_size": 28}}
    with pytest.raises(MLPLabError) as caught:  # in_channels given by the data; its output is not logits
        build(validate_config(raw, "tiny.yaml"))
    assert str(caught.value) == (
        "model.target: torch.nn:Conv2d maps a batch of shape (2, 1, 28, 28) to (2, 10, 1, 1); it must return "
        "logits (batch, num_classes) = (2, 10)"
    )
    raw["model"]["input"] = "flat"
    with pytest.raises(MLPLabError) as caught:
        build(validate_config(raw, "tiny.yaml"))
    assert str(caught.value).startswith(
        "model.target: torch.nn:Conv2d fails on a batch of shape (2, 784): RuntimeError: Expected 3D"
    )
    assert str(caught.value).endswith("(set model.input: images or flat if it expects the other)")


def test_kwargs_only_signatures_get_args_alone(user_config):
    net = build(user_config("anything"))
    assert net(torch.zeros(2, 784)).shape == (2, 10)


def test_penalized_weights_are_the_weight_tensors_unless_the_model_says(user_config):
    net = build(user_config("SmallCNN"))
    assert [tuple(w.shape) for w in net.penalized_weights()] == [(4, 1, 3, 3), (10, 4 * 28 * 28)]
    bn = build(user_config(args={"hidden_sizes": [8], "batch_norm": True}))
    assert [tuple(w.shape) for w in bn.penalized_weights()] == [(8, 784), (10, 8)]  # not BatchNorm's
    own = build(user_config("OwnPenalty"))
    assert [w is own.module.body[0].weight for w in own.penalized_weights()] == [True]


def test_the_layer_table_counts_macs_with_torch(user_config):
    cfg = user_config("SmallCNN")
    rows = layer_table(build(cfg), (1, 28, 28))
    # By hand: the conv does 4 x 1 x 3 x 3 MACs at each of 28 x 28 pixels; the Linear 3136 x 10.
    assert [(r["layer"], r["output_shape"], r["parameters"], r["macs"]) for r in rows] == [
        ("conv: Conv2d", ["batch", 4, 28, 28], 4 * 9 + 4, 28 * 28 * 4 * 9),
        ("head: Linear", ["batch", 10], 3136 * 10 + 10, 3136 * 10),
    ]
    assert rows[0]["detail"] == "1 -> 4, 3x3, padding 1"
    summary = model_summary(cfg)
    assert summary["macs_per_sample"] == 28 * 28 * 4 * 9 + 3136 * 10
    assert summary["total_parameters"] == 4 * 9 + 4 + 3136 * 10 + 10


def test_a_whole_module_as_the_target_is_one_row(user_config):
    rows = layer_table(build(user_config("linear")), (1, 28, 28))
    assert rows == [
        {
            "layer": "(top): Linear",
            "detail": "784 -> 10",
            "output_shape": ["batch", 10],
            "parameters": 7850,
            "macs": 7840,
        }
    ]


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "ParameterizedMLP",
            {"hidden_size": [8]},
            "model.args.hidden_size: my_models.py:ParameterizedMLP takes no argument 'hidden_size'; did you mean "
            "'hidden_sizes'? it takes: in_features, num_classes, hidden_sizes, batch_norm",
        ),
        (
            "needs_depth",
            {},
            "model.args: my_models.py:needs_depth needs 'depth': add model.args.depth (the tool passes only "
            "num_classes, in_features, in_channels, input_shape by itself)",
        ),
        (
            "not_a_module",
            {},
            "model.target: my_models.py:not_a_module returned a dict, not a torch.nn.Module: name a class or a "
            "function that builds one",
        ),
        (
            "five_outputs",
            {},
            "model.target: my_models.py:five_outputs maps a batch of shape (2, 784) to (2, 5); it must return "
            "logits (batch, num_classes) = (2, 10)",
        ),
    ],
)
def test_each_mistake_is_one_line(user_config, name, args, message):
    with pytest.raises(MLPLabError) as caught:
        build(user_config(name, args))
    assert str(caught.value) == message


def test_a_missing_name_lists_what_the_file_has(user_config, models_file):
    with pytest.raises(MLPLabError, match=rf"model.target: {models_file} has no 'Nope'; it has: Broken, OwnPenalty"):
        build(user_config("Nope"))


def test_an_exception_in_the_users_forward_names_their_line(user_config, models_file):
    net = build(user_config("Broken"))  # the blank batch passes
    line = MODELS.splitlines().index('            raise ValueError("negative pixels are not allowed here")') + 1
    with pytest.raises(ValueError):
        net(torch.ones(2, 784))  # training shows it through the CLI's user_errors (below)
    with pytest.raises(UserCodeError) as caught:
        call_user_code(net, torch.ones(2, 784))
    assert str(caught.value) == f"{models_file}:{line}: ValueError: negative pixels are not allowed here"
    assert "torch" not in caught.value.user_traceback.replace("import torch", "")


def write(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def test_validate_builds_the_model(user_config, tmp_path):
    good = write(user_config(args={"hidden_sizes": [8]}), tmp_path / "good.yaml")
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["model"]["args"] == {"hidden_sizes": [8]}
    bad = write(user_config("five_outputs"), tmp_path / "bad.yaml")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: model.target: my_models.py:five_outputs maps a batch of shape (2, 784) to (2, 5); it must return "
        "logits (batch, num_classes) = (2, 10)"
    ]


def test_the_auto_engine_is_autograd(user_config):
    from mlp_lab.config.engines import resolve_engine

    assert resolve_engine(user_config()) == "autograd"


def test_a_user_model_resumes_bit_exactly(user_config, tmp_path):
    cfg = user_config(args={"hidden_sizes": [16], "batch_norm": True}, epochs=3)
    weights = assert_resumes_identically(cfg, tmp_path)
    assert "body.1.running_mean" in weights


@pytest.mark.slow  # evaluate draws its plots
def test_summary_run_evaluate_and_a_changed_file(user_config, models_file, tmp_path):
    path = write(user_config("SmallCNN"), tmp_path / "cnn.yaml")
    summary = runner.invoke(app, ["summary", str(path), "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["macs_per_sample"] == 28 * 28 * 4 * 9 + 3136 * 10
    result = runner.invoke(app, ["run", str(path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["num_parameters"] == 4 * 9 + 4 + 3136 * 10 + 10
    evaluated = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(done["test/acc"])

    models_file.write_text(MODELS + "\n# edited\n")
    refused = runner.invoke(app, ["evaluate", str(run_dir)])
    assert refused.exit_code == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: model.target: {models_file} changed since the run recorded it (sha256 ")
    assert line.endswith("restore that version, or train again with this one")


def test_a_forward_error_in_training_shows_only_the_users_frames(user_config, models_file, tmp_path):
    path = write(user_config("Broken"), tmp_path / "broken.yaml")
    result = runner.invoke(app, ["run", str(path), "--threads", "1"])
    assert result.exit_code == 2, result.output
    line = MODELS.splitlines().index('            raise ValueError("negative pixels are not allowed here")') + 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (your code's frames only):"
    assert lines[-1] == f"error: {models_file}:{line}: ValueError: negative pixels are not allowed here"
    assert all("mlp_lab" not in text and "site-packages" not in text for text in lines[:-1])


def test_builtin_tables_are_unchanged(tiny_config):
    cfg = tiny_config()
    rows = layer_table(build_model(cfg.model, (1, 28, 28), 10), (1, 28, 28))
    assert [r["layer"] for r in rows] == ["0: Flatten", "1: Linear", "2: ReLU", "3: Dropout", "4: Linear"]
    assert model_summary(cfg)["macs_per_sample"] == 784 * 32 + 32 * 10


def test_the_blank_batch_leaves_the_global_generator_alone(user_config):
    cfg = user_config(args={"hidden_sizes": [16]})
    torch.manual_seed(3)
    net = build(cfg)
    after_build = torch.rand(3)
    torch.manual_seed(3)
    plain = type(net.module)(784, 10, hidden_sizes=[16])
    assert torch.equal(net.module.body[0].weight, plain.body[0].weight) and torch.equal(after_build, torch.rand(3))
    assert net.training


def test_bench_times_a_user_model_against_the_builtin_one(user_config):
    from mlp_lab.inspect.bench import run_user_benchmark

    lines = []
    results = run_user_benchmark(user_config(args={"hidden_sizes": [8]}), repeats=1, log=lines.append)
    cpu = results["cpu"]
    assert cpu["user"]["parameters"] == 784 * 8 + 8 + 8 * 10 + 10
    assert cpu["builtin"]["parameters"] == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert cpu["ratio"] == cpu["user"]["seconds"] / cpu["builtin"]["seconds"]
    assert lines[0].startswith("(cpu) user model my_models.py:ParameterizedMLP, train + val: ")
    assert lines[2].startswith("(cpu) user/built-in = ")


@pytest.mark.slow  # a whole study
def test_a_study_over_the_models_arguments_and_against_the_builtin_mlp(user_config, models_file, tmp_path, monkeypatch):
    # As a user writes it: no recorded hash (a run's config.yaml pins the code it ran).
    base = config_to_dict(user_config(args={"hidden_sizes": [8]}, epochs=1))
    del base["model"]["code_sha256"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study = {
        "description": "my MLP's width, and the built-in MLP",
        "base": "../mine.yaml",
        "factor": "model",
        "reference": "narrow",
        "seeds": [0],
        "arms": {
            "narrow": {},
            "wide": {"model.args.hidden_sizes": [16]},
            "builtin": {"model": {"kind": "mlp", "hidden_sizes": [8]}},
        },
    }
    path = tmp_path / "experiments" / "widths.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", str(path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    runs = tmp_path / "runs" / "widths"
    models = {
        arm: yaml.safe_load((runs / arm / "seed-0" / "config.yaml").read_text())["model"] for arm in study["arms"]
    }
    assert models["wide"]["args"] == {"hidden_sizes": [16]} and models["builtin"]["kind"] == "mlp"
    parameters = {
        arm: json.loads((runs / arm / "seed-0" / "summary.json").read_text())["num_parameters"] for arm in models
    }
    assert parameters == {"narrow": 784 * 8 + 8 + 90, "wide": 784 * 16 + 16 + 170, "builtin": 784 * 8 + 8 + 90}

    # The file edited: its arms retrain (the old runs set aside), never pooled with the new ones;
    # the built-in arm, which ran none of that code, is kept.
    before = models["narrow"]["code_sha256"]
    models_file.write_text(MODELS + "# edited\n")
    again = runner.invoke(app, ["compare", str(path), "--threads", "1"])
    assert again.exit_code == 0, again.output
    for arm in ("narrow", "wide"):
        assert f"{arm} seed 0: {runs / arm / 'seed-0'} was made with another config; moved to" in again.output
        assert f"{arm} seed 0: done (trained" in again.output
    assert "builtin seed 0: done (skipped" in again.output
    after = yaml.safe_load((runs / "narrow" / "seed-0" / "config.yaml").read_text())["model"]["code_sha256"]
    assert after == sha256_of(models_file) != before


def test_a_run_whose_file_changed_does_not_build(user_config, models_file, monkeypatch):
    cfg = user_config()  # records the file's hash, as a run's config.yaml does
    build(cfg)
    models_file.write_text(MODELS.replace("hidden_sizes=(16,)", "hidden_sizes=(32,)"))
    with pytest.raises(CodeChanged) as caught:
        build(cfg)
    recorded = cfg.model.code_sha256
    assert str(caught.value) == (
        f"model.target: {models_file} changed since the run recorded it (sha256 {recorded[:12]}..., now "
        f"{sha256_of(models_file)[:12]}...): restore that version, or train again with this one"
    )
    # A copy with the recorded content where runs look for code (a registered model's, a worker's) is used.
    copies = models_file.parent.parent / "copies"
    copies.mkdir()
    (copies / models_file.name).write_text(MODELS)
    monkeypatch.setenv("MLP_LAB_CODE_DIRS", str(copies))
    assert build(cfg).module.body[0].out_features == 16
