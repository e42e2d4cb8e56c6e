"""Real handwriting: scikit-learn's scanned digits as PNG files, through predict's preprocessing,
scored per rendering by `mlp-lab evaluate --handwriting`, in summary.json and in study reports."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from conftest import write_study
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.execution.procedure import resume_run, start_run
from mlp_lab.inspect.handwriting import RENDERINGS, handwriting_metrics, load_scans, render_scan, score_scans
from mlp_lab.inspect.predict import prepare_image
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import compare, load_study, plan
from mlp_lab.studies.report import build_report
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.trainer import train

MNIST_META = {"dataset": "mnist", "classes": [str(k) for k in range(10)], "image_shape": [1, 28, 28]}


def test_the_set_is_sklearns_1797_scans_of_ten_digits():
    ink, labels = load_scans()
    assert ink.shape == (1797, 8, 8) and ink.min() == 0 and ink.max() == 16
    assert sorted(set(labels.tolist())) == list(range(10))


def test_a_scan_is_a_grayscale_png_with_paper_around_the_ink_in_both_renderings():
    ink, _ = load_scans()
    light, dark = (np.asarray(Image.open(io.BytesIO(render_scan(ink[0], r)))) for r in RENDERINGS)
    assert light.shape == dark.shape == (48, 48) and light.dtype == np.uint8
    assert light[0].max() == 0 and dark[0].min() == 255  # the border is the paper
    assert light.max() > 200 and dark.min() < 55  # and there is ink
    assert np.array_equal(255 - light, dark)
    with pytest.raises(MLPLabError, match="choose one of light_on_dark, dark_on_light"):
        render_scan(ink[0], "sepia")


def test_predicts_preprocessing_turns_both_renderings_into_one_mnist_style_view():
    ink, _ = load_scans()
    views = [prepare_image(Image.open(io.BytesIO(render_scan(ink[5], r))), MNIST_META) for r in RENDERINGS]
    assert np.array_equal(views[0], views[1]) and views[0].shape == (1, 28, 28)
    rows, cols = np.nonzero(views[0][0] > 76)
    assert rows.max() - rows.min() <= 21 and cols.max() - cols.min() <= 21  # scaled to MNIST's 20-pixel box


def _always(k: int) -> torch.nn.Module:
    """A model that answers class k whatever it sees."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(k), 10).float())
    return model


def test_accuracy_per_rendering_counts_right_answers():
    _, labels = load_scans()
    meta = {**MNIST_META, "mean": [0.1307], "std": [0.3081]}
    scores = score_scans(_always(3), meta)
    for rendering in RENDERINGS:
        assert scores[rendering]["examples"] == 1797
        assert scores[rendering]["correct"] == int((labels == 3).sum())
        assert scores[rendering]["per_class_accuracy"] == [1.0 if k == 3 else 0.0 for k in range(10)]
    with pytest.raises(MLPLabError, match="trained on fashion_mnist, not mnist"):
        score_scans(_always(3), {**meta, "dataset": "fashion_mnist"})


def test_output_handwriting_needs_a_digits_dataset(tiny_config):
    with pytest.raises(ConfigError, match="output.handwriting: scores digits: needs data.dataset 'mnist'"):
        tiny_config(data={"dataset": "fashion_mnist"}, output={"handwriting": True})


def test_a_run_with_output_handwriting_records_it_and_evaluate_reports_it(tiny_config, tmp_path):
    # The plug-in is scored by the run procedure once the trainer has finished, not by the trainer.
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}, output={"handwriting": True})
    summary = start_run(cfg, run_dir=tmp_path / "run").summary
    assert rundir.read_summary(tmp_path / "run") == summary
    per_rendering = [summary[f"handwriting/acc_{r}"] for r in RENDERINGS]
    assert summary["handwriting/acc"] == pytest.approx(np.mean(per_rendering)) and 0 <= per_rendering[0] <= 1
    assert list(summary)[-3:] == ["handwriting/acc", *(f"handwriting/acc_{r}" for r in RENDERINGS)]
    plain = train(tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}), tmp_path / "plain")
    assert "handwriting/acc" not in plain and plain["config_hash"] == summary["config_hash"]
    # The same as the trainer's own model scores it: the checkpoint the summary's test used.
    assert handwriting_metrics(load_model(tmp_path / "run").model, MNIST_META | _stats(tmp_path / "run")) == {
        k: summary[k] for k in list(summary)[-3:]
    }
    # A finished run found again keeps its scores; one whose summary lost them gets them back.
    assert resume_run(tmp_path / "run").summary == summary
    rundir.write_json(tmp_path / "run" / rundir.SUMMARY_FILE, {k: summary[k] for k in list(summary)[:-3]})
    assert resume_run(tmp_path / "run").summary == summary == rundir.read_summary(tmp_path / "run")

    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--handwriting", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [record["renderings"][r]["accuracy"] for r in RENDERINGS] == per_rendering
    assert json.loads((tmp_path / "run" / "eval" / "handwriting_metrics.json").read_text()) == record
    text = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--handwriting"]).output
    assert "light_on_dark" in text and "dark_on_light" in text and "/1797" in text


def _stats(run_dir):
    meta = load_model(run_dir).data_meta
    return {"mean": meta["mean"], "std": meta["std"], "pixel_permutation": meta["pixel_permutation"]}


def test_evaluate_handwriting_refuses_a_fashion_run(tiny_config, tmp_path):
    train(tiny_config(data={"dataset": "fashion_mnist"}, train={"epochs": 1, "device": "cpu"}), tmp_path / "f")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "f"), "--handwriting"])
    assert result.exit_code == 2 and "error: " in result.output and "not mnist" in result.output


@pytest.mark.slow
def test_a_study_reports_real_handwriting_beside_test_accuracy(tiny_config, tmp_path):
    exp = load_study(write_study(tmp_path, tiny_config, overrides={"output.handwriting": True}, seeds=[0]))
    compare(exp, log=lambda _: None)
    report = build_report(exp)
    runs = {spec.arm: rundir.read_json(spec.run_dir / rundir.SUMMARY_FILE) for spec in plan(exp)}
    for row in report["arms"]:
        run = runs[row["arm"]]
        assert row["handwriting_acc_mean"] == pytest.approx(run["handwriting/acc"])
    text = (exp.output_dir / "report.md").read_text()
    assert "real handwriting acc %" in text and "The same for real-handwriting accuracy" in text
