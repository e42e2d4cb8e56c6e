"""The checkpoint format and load_model: self-describing, safe to load, one loader for every user."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mlp_lab.config.schema import config_to_dict
from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.load import load_data
from mlp_lab.training.checkpoint import CheckpointError, load_checkpoint, load_model
from mlp_lab.training.trainer import evaluate, train


def test_both_checkpoints_describe_themselves_and_carry_the_data_facts(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"})
    train(cfg, tmp_path / "run")
    for kind in ("best", "last"):
        ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / f"{kind}.pt", kind)
        assert ckpt["kind"] == f"mlp-lab/{kind}" and ckpt["config"]["name"] == "tiny"
        # The model's section itself, as validated: what its family rebuilds it from.
        assert ckpt["version"] == 2 and ckpt["model_section"] == config_to_dict(cfg.model)
        assert ckpt["model_section"]["kind"] == "mlp" and ckpt["model_section"]["hidden_sizes"] == [32]
        # last.pt holds the data facts too: a run kept with its last weights needs no best.pt.
        assert ckpt["data"]["dataset"] == "mnist" and ckpt["data"]["image_shape"] == [1, 28, 28]
        assert len(ckpt["data"]["classes"]) == 10 and len(ckpt["data"]["mean"]) == 1


@pytest.mark.parametrize("restore_best, expected", [(True, "best"), (False, "last")])
def test_load_model_gives_the_weights_the_test_metrics_used(tiny_config, tmp_path, restore_best, expected):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu", "restore_best": restore_best})
    summary = train(cfg, tmp_path / "run")
    run = load_model(tmp_path / "run")
    assert run.checkpoint == expected and not run.model.training
    assert run.config == cfg and len(run.classes) == 10
    data = load_data(cfg.data, "cpu")
    loss, acc = evaluate(run.model, data.test)
    assert acc == summary["test/acc"] and loss == pytest.approx(summary["test/loss"], rel=1e-9)


def test_load_model_without_best_uses_last_when_asked(tiny_config, tmp_path):
    train(tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}), tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="best.pt: checkpoint not found"):
        load_model(tmp_path / "run")
    assert load_model(tmp_path / "run", which="last").checkpoint == "last"


def test_load_model_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(MLPLabError, match="not a run directory"):
        load_model(tmp_path)


def test_a_checkpoint_of_an_older_format_without_data_is_named(tiny_config, tmp_path):
    train(tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}), tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["data"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="holds no data description"):
        load_model(tmp_path / "run")


def test_a_checkpoint_cut_short_is_one_whole_sentence(tmp_path):
    """torch's message for a torn zip runs on about trusting the source; the error keeps its first
    sentence whole (it was cut at 200 characters, mid-word) and says what to do."""
    path = tmp_path / "best.pt"
    torch.save({"kind": "mlp-lab/best", "model": {"w": torch.zeros(256, 784)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, "best")
    message = str(caught.value)
    assert message.startswith(f"{path}: truncated or corrupt, not a readable mlp-lab checkpoint (")
    assert "failed finding central directory)" in message, message
    assert message.endswith("; restore a complete copy, or train the run again"), message


# Two runs trained by mlp-lab at 1f9c148 (checkpoint version 1, `model_args` instead of the model
# section) on conftest's synthetic IDX data, kept as they were written (best.pt, config.yaml,
# summary.json, metrics.csv): a 784-2-10 MLP and a one-block CNN with BatchNorm.
OLD_RUNS = Path(__file__).parent / "old_checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("kind, model_class", [("mlp", "ParameterizedMLP"), ("cnn", "ParameterizedCNN")])
def test_a_checkpoint_written_before_the_model_sections_still_loads_evaluates_and_predicts(
    kind, model_class, idx_dir, tmp_path, monkeypatch
):
    from PIL import Image

    from mlp_lab.inspect.evaluation import evaluate_run
    from mlp_lab.inspect.predict import predict_files

    run_dir = shutil.copytree(OLD_RUNS / kind, tmp_path / kind)  # evaluate writes eval/ beside it
    monkeypatch.setenv("MLP_LAB_DATA", str(idx_dir))  # the same synthetic data it was trained on
    monkeypatch.chdir(tmp_path)  # its data.root is relative
    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt", "best")
    assert ckpt["version"] == 1 and "model_args" in ckpt and "model_section" not in ckpt
    run = load_model(run_dir)
    assert type(run.model).__name__ == model_class and run.config.model.kind == kind
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.model.num_parameters() == summary["num_parameters"]
    result = evaluate_run(run_dir)
    assert (result["accuracy"], result["loss"]) == pytest.approx((summary["test/acc"], summary["test/loss"]), rel=1e-6)
    picture = np.zeros((28, 28), np.uint8)
    picture[6:8] = 255
    Image.fromarray(picture).save(tmp_path / "band.png")
    [predicted] = predict_files(run, [tmp_path / "band.png"], top_k=2)
    assert len(predicted["top"]) == 2


def test_a_model_logged_to_mlflow_before_the_packages_still_loads_and_predicts(idx_dir, tmp_path, monkeypatch):
    """MLflow keeps the copy of mlflow_model.py a model was logged with and runs it on every load:
    the 0.1 copy (kept beside the old runs) imports `mlp_lab.checkpoint` and `mlp_lab.data`'s
    `to_features`, which the packages keep reachable."""
    import runpy
    from types import SimpleNamespace

    pytest.importorskip("mlflow")
    code = runpy.run_path(str(OLD_RUNS / "mlflow_model_0_1.py"))
    model = code["MLPLabModel"]()
    best = OLD_RUNS / "mlp" / "checkpoints" / "best.pt"
    model.load_context(SimpleNamespace(artifacts={"checkpoint": str(best)}, model_config={}))
    pixels = np.zeros((3, 28, 28), np.uint8)
    pixels[1, 6:8] = 255
    probabilities = model.predict(None, pixels)
    assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    # The same numbers as today's reader gives for the same checkpoint.
    run = load_model(OLD_RUNS / "mlp")
    from mlp_lab.data.normalise import to_features

    meta = load_checkpoint(best, "best")["data"]
    features = to_features(torch.from_numpy(pixels).reshape(-1, 1, 28, 28), meta["mean"], meta["std"])
    with torch.inference_mode():
        expected = torch.softmax(run.model(features), 1).numpy()
    assert np.array_equal(probabilities, expected)
