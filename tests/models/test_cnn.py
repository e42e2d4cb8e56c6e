"""The CNN beside the MLP (model.kind: cnn) and data.permute_pixels, through every verb: run and
resume, compare, suite, search, summary, evaluate, predict, the registry's pyfunc model and the
app's Draw page (Ray's is in test_executors_ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    SHIPPED_HASHES_NUMERICS_2,
    assert_resumes_identically,
    write_config,
    write_study,
)
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.datasets import DATASETS
from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config, validate_config
from mlp_lab.config.schema import Config
from mlp_lab.core.errors import ConfigError
from mlp_lab.data.load import load_data
from mlp_lab.data.normalise import to_features
from mlp_lab.inspect.analysis import model_summary, unnormalize
from mlp_lab.inspect.predict import Predictor, predict
from mlp_lab.models.cnn import ChannelDropout, ParameterizedCNN
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.models.registry import build_model, layer_table
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.trainer import evaluate, train

runner = CliRunner()

# A CNN small enough for the tiny synthetic data: one block of 4 maps, pooled, then 16 units.
TINY_CNN = {
    "kind": "cnn",
    "conv": {"channels": [4], "kernel_size": 3, "padding": 1, "batch_norm": True, "dropout": 0.2},
    "hidden_sizes": [16],
    "dropout": 0.1,
}

REPO = Path(__file__).resolve().parents[2]


def tiny_cnn(tiny_config, **train):
    return tiny_config(model=TINY_CNN, train={"epochs": 2, "batch_size": 32, "device": "cpu", **train})


@pytest.mark.parametrize("name", sorted(SHIPPED_HASHES_NUMERICS_2))
def test_the_new_keys_leave_every_earlier_config_hash_as_it_was(name, monkeypatch):
    # Pinned under numerics version 2 (main before the keys existed); the numerics version is
    # part of the hash, so the comparison is made under that version.
    monkeypatch.setattr("mlp_lab.config.hashing.NUMERICS_VERSIONS", {"autograd": 2, "hand": 2})
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert config_hash(cfg) == SHIPPED_HASHES_NUMERICS_2[name]
    # An MLP ignores conv settings and an unpermuted run its permutation seed: same hash.
    unused = cfg.model_dump(mode="json")
    unused["model"]["conv"] = {"channels": [3, 5]}
    unused["data"]["permute_seed"] = 7
    assert config_hash(validate_config(unused, "x.yaml")) == SHIPPED_HASHES_NUMERICS_2[name]
    # What does change training changes the hash.
    for key, value in (("model.kind", "cnn"), ("data.permute_pixels", True)):
        raw = cfg.model_dump(mode="json")
        section, field = key.split(".")
        raw[section][field] = value
        assert config_hash(validate_config(raw, "x.yaml")) != SHIPPED_HASHES_NUMERICS_2[name], key


def test_lenet5_has_its_textbook_size_and_every_count_agrees():
    cfg = load_config(REPO / "configs" / "mnist_lenet5.yaml")
    shape = DATASETS["mnist"].image_shape
    model = build_model(cfg.model, shape, 10)
    rows = layer_table(model, shape)
    assert isinstance(model, ParameterizedCNN)
    assert model.num_parameters() == 61_706 == cfg.model.geometry(shape, 10).parameters
    assert [r["output_shape"] for r in rows if "Conv2d" in r["layer"]] == [["batch", 6, 28, 28], ["batch", 16, 10, 10]]
    # C1: 28*28 pixels x 6 maps x 5*5 taps; C3: 10*10 x 16 x 6*5*5; then 400-120-84-10.
    expected = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert sum(r["macs"] for r in rows) == cfg.model.geometry(shape, 10).macs == expected == 416_520


@pytest.mark.parametrize("config", ["baseline", "fashion_cnn", "mnist_lenet5", "cifar10", "cifar10_cnn"])
def test_macs_and_parameters_from_the_config_match_the_built_model(config):
    cfg = load_config(REPO / "configs" / f"{config}.yaml")
    facts = DATASETS[cfg.data.dataset]
    model = build_model(cfg.model, facts.image_shape, facts.num_classes)
    rows = layer_table(model, facts.image_shape)
    geometry = cfg.model.geometry(facts.image_shape, facts.num_classes)
    assert sum(r["macs"] for r in rows) == geometry.macs
    assert geometry.parameters == model.num_parameters()
    if cfg.model.kind == "mlp":
        assert isinstance(model, ParameterizedMLP)
        widths = [facts.in_features, *cfg.model.hidden_sizes, facts.num_classes]
        assert geometry.macs == sum(a * b for a, b in zip(widths, widths[1:]))


def test_a_cnn_too_deep_for_its_image_is_one_error_naming_the_key():
    raw = Config().model_dump(mode="json")
    raw["model"].update(kind="cnn", conv={"channels": [4] * 6, "kernel_size": 3, "padding": 0})
    with pytest.raises(ConfigError) as exc:
        validate_config(raw, "deep.yaml")
    assert exc.value.errors == [
        "deep.yaml: model.conv: block 4 of 6 leaves no pixels (28x28 input): use fewer blocks, more padding or less pooling"
    ]
    raw["model"]["conv"] = {"channels": [4, 8], "padding": [1]}
    with pytest.raises(ConfigError, match="model.conv: padding lists 1 values for 2 blocks"):
        validate_config(raw, "pad.yaml")


def test_channel_dropout_drops_whole_maps_and_keeps_the_mean():
    torch.manual_seed(0)
    layer = ChannelDropout(0.5).train()
    out = layer(torch.ones(64, 8, 5, 5))
    per_map = out.flatten(2)
    assert torch.equal(per_map.amin(2), per_map.amax(2)), "a map is dropped or kept whole"
    assert set(per_map[:, :, 0].unique().tolist()) == {0.0, 2.0}
    assert abs(out.mean().item() - 1.0) < 0.1
    assert torch.equal(layer.eval()(out), out)


def test_a_cnn_run_interrupted_and_resumed_equals_an_uninterrupted_one(tiny_config, tmp_path):
    cfg = tiny_cnn(tiny_config, epochs=3, scheduler={"name": "cosine"})
    a = assert_resumes_identically(cfg, tmp_path)
    assert any(k.endswith("running_mean") for k in a), "the conv BatchNorm's statistics are saved too"


def test_a_cnn_checkpoint_rebuilds_the_cnn_and_reproduces_the_test_score(tiny_config, tmp_path):
    cfg = tiny_cnn(tiny_config)
    summary = train(cfg, tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert isinstance(loaded.model, ParameterizedCNN) and loaded.config.model.kind == "cnn"
    assert summary["num_parameters"] == cfg.model.geometry((1, 28, 28), 10).parameters
    loss, acc = evaluate(loaded.model, load_data(cfg.data).test)
    assert (loss, acc) == pytest.approx((summary["test/loss"], summary["test/acc"]), rel=1e-6)


def test_permute_pixels_moves_pixels_alike_in_every_split_and_channel(tiny_config, tmp_path):
    plain = load_data(tiny_config().data)
    permuted_cfg = tiny_config(data={"permute_pixels": True, "permute_seed": 3})
    permuted = load_data(permuted_cfg.data)
    order = torch.as_tensor(permuted.info.pixel_permutation)
    assert sorted(order.tolist()) == list(range(784)) and not torch.equal(order, torch.arange(784))
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(permuted, split).x, getattr(plain, split).x[:, order])
        assert torch.equal(getattr(permuted, split).y, getattr(plain, split).y)
    other = load_data(tiny_config(data={"permute_pixels": True, "permute_seed": 4}).data).info.pixel_permutation
    assert other != permuted.info.pixel_permutation
    # Three channels: each one's pixels in the same order.
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    perm = torch.randperm(16).tolist()
    rows = to_features(images, [0.5] * 3, [0.25] * 3, perm).view(2, 3, 16)
    assert torch.equal(rows, to_features(images, [0.5] * 3, [0.25] * 3).view(2, 3, 16)[:, :, perm])


def _test_images(run_dir, cfg):
    """The run's test split as the uint8 pictures a user would hand to predict, and its labels."""
    data = load_data(cfg.model_copy(update={"data": cfg.data.model_copy(update={"permute_pixels": False})}).data)
    info = data.info
    images = (unnormalize(data.test.x, info.image_shape, info.mean, info.std) * 255).round().to(torch.uint8)
    return images[:, 0].numpy(), data.test.y


def test_predict_on_a_permuted_cnn_run_answers_as_the_permuted_test_split(tiny_config, tmp_path):
    cfg = tiny_cnn(tiny_config, epochs=3)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"permute_pixels": True})})
    summary = train(cfg, tmp_path / "run")
    run = load_model(tmp_path / "run")
    assert run.data_meta["pixel_permutation"] == list(load_data(cfg.data).info.pixel_permutation)
    images, labels = _test_images(tmp_path / "run", cfg)
    # Pictures in the dataset's own format, so no recipe and no inverting: exactly the test rows.
    probabilities = Predictor(run, invert=False, normalise="plain").probabilities(list(images))
    expected = predict(run.model, load_data(cfg.data).test.x)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-6)
    assert (probabilities.argmax(1) == labels).float().mean().item() == pytest.approx(summary["test/acc"])
    # Without the permutation the same pictures are other inputs: the answers differ.
    unpermuted = predict(run.model, load_data(tiny_config().data).test.x)
    assert not torch.allclose(unpermuted, expected)


def test_the_draw_page_classifies_through_a_permuted_cnn_run(tiny_config, tmp_path):
    pytest.importorskip("streamlit")
    from mlp_lab.app import drawing
    from mlp_lab.app.draw_page import predictor_for

    cfg = tiny_cnn(tiny_config)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"permute_pixels": True})})
    train(cfg, tmp_path / "run")
    images, _ = _test_images(tmp_path / "run", cfg)
    predictor = predictor_for(tmp_path / "run", "plain")
    classified = drawing.classify(predictor, images[0])
    # What the page shows is the picture before normalisation; the model must see it permuted.
    meta, model = predictor.meta, load_model(tmp_path / "run").model
    view = torch.from_numpy(classified.view).unsqueeze(0)
    expected = predict(model, to_features(view, meta["mean"], meta["std"], meta["pixel_permutation"]))[0]
    unpermuted = predict(model, to_features(view, meta["mean"], meta["std"]))[0]
    assert classified.probabilities == pytest.approx(expected.tolist(), abs=1e-6)
    assert not torch.allclose(expected, unpermuted)
    assert classified.view.shape == (1, 28, 28)


def test_summary_shows_the_cnn_layer_table_with_shapes_parameters_and_macs(tmp_path):
    result = runner.invoke(app, ["summary", str(REPO / "configs" / "mnist_lenet5.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["macs_per_sample"] == 416_520 == sum(r["macs"] for r in info["layers"])
    assert info["layers"][0] == {
        "layer": "0: Conv2d",
        "detail": "1 -> 6, 5x5, padding 2",
        "output_shape": ["batch", 6, 28, 28],
        "parameters": 156,
        "macs": 117_600,
    }
    text = runner.invoke(app, ["summary", str(REPO / "configs" / "mnist_lenet5.yaml")])
    assert text.exit_code == 0 and "MACs" in text.output and "117,600" in text.output, text.output
    assert "multiply-accumulates per sample: 416,520" in text.output
    assert (
        model_summary(load_config(REPO / "configs" / "baseline.yaml"))["macs_per_sample"]
        == 784 * 256 + 256 * 128 + 1280
    )


def test_run_then_evaluate_and_predict_a_cnn_from_the_command_line(tiny_config, tmp_path):
    cfg_path = write_config(tmp_path, tiny_cnn(tiny_config))
    run_dir = tmp_path / "runs" / "cnn"
    result = runner.invoke(app, ["run", str(cfg_path), "--run-dir", str(run_dir), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    evaluated = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(summary["test/acc"])
    from PIL import Image

    images, _ = _test_images(run_dir, load_config(cfg_path))
    Image.fromarray(images[0], mode="L").save(tmp_path / "0.png")
    predicted = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "0.png"), "--json", "--no-invert"])
    assert predicted.exit_code == 0, predicted.output
    assert len(json.loads(predicted.stdout)[0]["top"]) == 3


CNN_ARMS = {"mlp": {}, "cnn": {"model": TINY_CNN}}


def test_compare_and_suite_run_an_mlp_against_a_cnn(tiny_config, tmp_path, monkeypatch):
    study = write_study(tmp_path, tiny_config, arms=CNN_ARMS, factor="model", reference="mlp", seeds=[0])
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", str(study), "--threads", "1"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "study"
    cnn = load_model(out / "cnn" / "seed-0")
    assert isinstance(cnn.model, ParameterizedCNN)
    assert isinstance(load_model(out / "mlp" / "seed-0").model, ParameterizedMLP)
    report = (out / "report.md").read_text()
    assert "| cnn |" in report and "| mlp |" in report, report
    # The suite finds the study's runs done and writes the overview over them.
    suite = runner.invoke(app, ["suite", "study", "--threads", "1"])
    assert suite.exit_code == 0, suite.output
    assert "skipped" in suite.output or "done" in suite.output, suite.output
    assert "study" in (tmp_path / "runs" / "index.md").read_text()


def test_search_samples_cnn_parameters_under_model(tiny_config, tmp_path):
    pytest.importorskip("optuna")
    from test_search import quiet, write_search

    from mlp_lab.search.driver import run_search
    from mlp_lab.search.spec import load_search

    path = write_search(tmp_path, tiny_config, epochs=1, trials=2)
    spec = yaml.safe_load(path.read_text())
    base = yaml.safe_load((tmp_path / "configs" / "tiny.yaml").read_text())
    base["model"].update(TINY_CNN)
    (tmp_path / "configs" / "tiny.yaml").write_text(yaml.safe_dump(base))
    spec["params"] = {
        "model.conv.channels": {"type": "categorical", "choices": [[2], [4, 4]]},
        "model.conv.pool": {"type": "categorical", "choices": ["max", "avg"]},
    }
    path.write_text("# Run: mlp-lab search tiny_search\n" + yaml.safe_dump(spec, sort_keys=False))
    result = run_search(load_search(path), log=quiet)
    assert result.finished == 2
    out = tmp_path / "runs" / "tiny_search"
    for n in range(2):
        trial = json.loads((out / f"trial-{n}" / "trial.json").read_text())
        model = load_model(out / f"trial-{n}").model
        assert isinstance(model, ParameterizedCNN)
        channels = trial["params"]["model.conv.channels"]  # a list choice is recorded as its YAML text
        convs = [m for m in model.layers if isinstance(m, torch.nn.Conv2d)]
        expected = yaml.safe_load(channels) if isinstance(channels, str) else channels
        assert [m.out_channels for m in convs] == expected
        pools = {"max": torch.nn.MaxPool2d, "avg": torch.nn.AvgPool2d}
        assert any(isinstance(m, pools[trial["params"]["model.conv.pool"]]) for m in model.layers)
    best = load_config(out / "best.yaml")
    assert best.model.kind == "cnn"


def test_the_shipped_cnn_studies_compare_models_and_permutations():
    from mlp_lab.studies.ablation import load_study

    for name, dataset in (("mlp_vs_cnn", "mnist"), ("mlp_vs_cnn_fashion", "fashion_mnist")):
        study = load_study(REPO / "experiments" / f"{name}.yaml")
        kinds = {a.name: (a.config.model.kind, a.config.data.dataset) for a in study.arms}
        assert kinds == {"mlp": ("mlp", dataset), "cnn": ("cnn", dataset), "lenet5": ("cnn", dataset)}
        counts = {a.name: a.config.model.geometry((1, 28, 28), 10).parameters for a in study.arms}
        assert 0.5 < counts["cnn"] / counts["mlp"] < 1.5, "a CNN of about the MLP's parameter count"
        assert counts["lenet5"] == 61_706 and len(study.seeds) == 3
    permuted = load_study(REPO / "experiments" / "permuted_pixels.yaml")
    arms = {a.name: (a.config.model.kind, a.config.data.permute_pixels) for a in permuted.arms}
    assert arms == {
        "cnn": ("cnn", False),
        "cnn_permuted": ("cnn", True),
        "mlp": ("mlp", False),
        "mlp_permuted": ("mlp", True),
    }


@pytest.mark.slow
def test_the_registered_cnn_model_applies_the_runs_permutation(tiny_config, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from test_tracking import STORE_FILE

    cfg = tiny_cnn(tiny_config)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"permute_pixels": True})})
    run_dir = tmp_path / "runs" / "tiny"
    train(cfg, run_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["register", "runs/tiny", "--name", "tiny-cnn"])
    assert result.exit_code == 0, result.output
    images, _ = _test_images(run_dir, cfg)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs' / STORE_FILE}")
    model = mlflow.pyfunc.load_model("models:/tiny-cnn/1")
    theirs = model.predict(images[:8].astype(np.int64))
    expected = predict(load_model(run_dir).model, load_data(cfg.data).test.x[:8]).numpy()
    np.testing.assert_allclose(theirs, expected, rtol=0, atol=1e-6)
