"""Analysis commands on a small synthetic run: data, summary, evaluate, predict, curves."""

import json

import numpy as np
import pytest
import torch
from conftest import write_config
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.data.load import load_data
from mlp_lab.execution.procedure import start_run
from mlp_lab.inspect.analysis import describe_data, model_summary, unnormalize
from mlp_lab.inspect.evaluation import evaluate_run, per_class_report
from mlp_lab.inspect.predict import predict_files
from mlp_lab.models.registry import build_model
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.trainer import train

runner = CliRunner()


@pytest.fixture
def trained_run(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"})
    run_dir = tmp_path / "runs" / "tiny"
    # Through the one procedure that runs a run: it, not the trainer, draws curves.png.
    summary = start_run(cfg, run_dir=run_dir).summary
    return cfg, run_dir, summary


def test_every_run_writes_curves_png(trained_run):
    _, run_dir, _ = trained_run
    image = Image.open(run_dir / "curves.png")
    assert image.size[0] > 1000 and image.size[1] > 300


@pytest.mark.slow
def test_evaluate_matches_summary_and_confusion_matrix_sums_to_split(trained_run):
    cfg, run_dir, summary = trained_run
    result = evaluate_run(run_dir, "test")
    assert result["accuracy"] == summary["test/acc"]
    assert result["loss"] == pytest.approx(summary["test/loss"], rel=1e-9)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == result["examples"] == 200
    assert np.trace(matrix) / matrix.sum() == pytest.approx(result["accuracy"])
    assert sum(r["support"] for r in result["per_class"]) == 200
    for name in (
        "test_report.txt",
        "test_per_class.csv",
        "test_confusion_matrix.png",
        "test_predictions.png",
        "test_metrics.json",
    ):
        path = run_dir / "eval" / name
        assert path.is_file() and path.stat().st_size > 0, name
        assert name in result["files"], name  # the files it says it wrote: the metrics JSON too
    val = evaluate_run(run_dir, "val")
    assert val["examples"] == 120 and val["accuracy"] == pytest.approx(summary["best/val_acc"])


def test_per_class_report_on_known_values():
    rows = per_class_report(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert rows[0] == {"class": "a", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0


def test_predict_on_a_saved_test_image_returns_the_models_label(trained_run, tmp_path):
    cfg, run_dir, _ = trained_run
    data = load_data(cfg.data)
    run = load_model(run_dir)
    with torch.inference_mode():
        predicted = run.model(data.test.x[:5]).argmax(1).tolist()
    images = unnormalize(data.test.x[:5], data.info.image_shape, data.info.mean, data.info.std)
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"test{i}.png"
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    # The synthetic classes are bands across the whole field, not digits: resize only.
    results = predict_files(run, paths, top_k=3, invert=False, normalise="plain")
    assert [r["top"][0]["index"] for r in results] == predicted
    assert all(len(r["top"]) == 3 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in results)
    # Any size and colour: a big RGB version of the same picture is preprocessed to 28x28 grayscale.
    big = tmp_path / "big.jpg"
    Image.open(paths[0]).convert("RGB").resize((280, 280), Image.Resampling.NEAREST).save(big, quality=95)
    assert predict_files(run, [big], invert=False, normalise="plain")[0]["top"][0]["index"] == predicted[0]


def test_predict_cli_json_and_not_an_image(trained_run, tmp_path):
    _, run_dir, _ = trained_run
    picture = tmp_path / "p.png"
    pixels = np.zeros((40, 30, 3), dtype=np.uint8)
    pixels[8:32, 12:18] = 255  # a stroke: an all-black picture is refused as blank
    Image.fromarray(pixels).save(picture)
    result = runner.invoke(app, ["predict", str(run_dir), str(picture), "--json", "--top-k", "2", "--invert"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)
    assert parsed[0]["image"] == str(picture) and len(parsed[0]["top"]) == 2
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    bad = runner.invoke(app, ["predict", str(run_dir), str(text)])
    assert bad.exit_code == 2 and "not a readable image" in bad.stderr and "Traceback" not in bad.output
    missing = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "nope.png")])
    assert missing.exit_code == 2 and "image file not found" in missing.stderr
    plain = runner.invoke(app, ["predict", str(run_dir), str(picture), "--normalise", "plain", "--no-invert", "--json"])
    assert plain.exit_code == 0 and json.loads(plain.stdout)[0]["image"] == str(picture)


def test_summary_counts_equal_the_model(tiny_config):
    cfg = tiny_config(model={"hidden_sizes": [64, 32], "batch_norm": True, "dropout": 0.2})
    info = model_summary(cfg)
    model = build_model(cfg.model, (1, 28, 28), 10)
    assert info["total_parameters"] == model.num_parameters()
    assert sum(r["parameters"] for r in info["layers"]) == model.num_parameters()
    assert info["macs_per_sample"] == 784 * 64 + 64 * 32 + 32 * 10
    assert info["layers"][-1]["output_shape"] == ["batch", 10]


def test_data_counts_match_split_sizes(tiny_config, tmp_path, idx_dir):
    cfg = tiny_config()
    data = load_data(cfg.data)
    # The copy in data.root says where it came from (Debian's folder, a --data-dir), on this load
    # and on later ones that find the copy ready.
    assert data.info.source == f"{(tmp_path / 'data').resolve()} (copied from {idx_dir.resolve()})"
    info = describe_data(data)
    assert [sum(info["counts"][s]) for s in ("train", "val", "test")] == [480, 120, 200]
    assert info["channels"] == 1 and info["colour"] == "grayscale" and info["classes"][3] == "3"
    config_path = write_config(tmp_path, cfg, "c.yaml")
    result = runner.invoke(app, ["data", "--config", str(config_path), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "mnist_samples.png").stat().st_size > 0
    assert "480" in result.output and "120" in result.output
    assert f"(copied from {idx_dir.resolve()})" in result.output
    unknown = runner.invoke(app, ["data", "imagenet"])
    assert unknown.exit_code == 2 and "unknown" in unknown.stderr


def test_summary_and_evaluate_cli(trained_run, tmp_path):
    cfg, run_dir, summary = trained_run
    config_path = write_config(tmp_path, cfg, "c.yaml")
    shown = runner.invoke(app, ["summary", str(config_path)])
    assert shown.exit_code == 0 and "25,450" in shown.output
    evaluated = runner.invoke(app, ["evaluate", str(run_dir)])
    assert evaluated.exit_code == 0 and f"accuracy {summary['test/acc']:.4f}" in evaluated.output
    assert runner.invoke(app, ["evaluate", str(tmp_path / "nothing")]).exit_code == 2


def test_histograms_are_logged_when_asked(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(
        train={"epochs": 2, "batch_size": 32, "device": "cpu"},
        output={"dir": str(tmp_path / "runs"), "tensorboard": True, "histograms": True},
    )
    train(cfg, tmp_path / "runs" / "h")
    events = EventAccumulator(str(tmp_path / "runs" / "h"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()["histograms"]
    assert "weights/layers.1.weight" in tags and "grads/layers.1.weight" in tags
