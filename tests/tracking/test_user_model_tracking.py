"""A user's model through MLflow: `run --track` logs the model with the user's code, `register`
names it, and plain MLflow loads it in a fresh interpreter where the user's file is gone
(against a real SQLite store, as tests/tracking/test_tracking.py does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_images
from typer.testing import CliRunner
from user_code_helpers import user_raw_config, write_user_config, write_user_net

from mlp_lab.cli import app
from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import config_to_dict
from mlp_lab.core import usercode

mlflow = pytest.importorskip("mlflow")

from mlp_lab.tracking.logger import USER_CODE_DIR, stage_user_code  # noqa: E402
from mlp_lab.tracking.store import STORE_FILE  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _test_set() -> tuple[np.ndarray, np.ndarray]:
    """The raw test images and labels of conftest's synthetic IDX data (write_idx_dataset's
    defaults: 600 training images, then 200 test images, from one generator seeded 0)."""
    rng = np.random.default_rng(0)
    synthetic_images(600, rng)
    images, labels = synthetic_images(200, rng)
    return images[:, 0], labels.astype(np.int64)


def test_a_user_models_code_is_staged_by_hash_and_a_built_in_stages_none(tiny_config, tmp_path):
    net = write_user_net(tmp_path / "project", str(tmp_path))
    config = validate_config(user_raw_config(tiny_config(), f"{net}:Net"), "user.yaml")
    staged = stage_user_code(config_to_dict(config), tmp_path / "staged")
    assert staged == tmp_path / "staged" / USER_CODE_DIR
    assert (staged / config.model.code_sha256 / "my_net.py").read_bytes() == net.read_bytes()
    assert stage_user_code(config_to_dict(tiny_config()), tmp_path / "none") is None


@pytest.mark.slow
def test_a_registered_user_model_scores_its_test_accuracy_in_a_fresh_interpreter_without_its_file(
    tiny_config, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    write_user_net(project, str(tmp_path))
    # A narrow net trained briefly: an accuracy short of 100 %, so that equal figures say something.
    config = write_user_config(project, tiny_config(), epochs=1, hidden=6)
    monkeypatch.chdir(tmp_path)  # the default store: ./runs/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    trained = runner.invoke(app, ["run", str(config), "--track"])
    assert trained.exit_code == 0, trained.output
    run_dir = Path(tiny_config().output.dir) / "user"
    summary = json.loads((run_dir / "summary.json").read_text())
    registered = runner.invoke(app, ["register", str(run_dir), "--name", "user-net", "--alias", "champion"])
    assert registered.exit_code == 0 and "alias champion" in registered.output, registered.output

    shutil.rmtree(project)  # the user's file is gone; nothing of it is on the path below
    images, labels = _test_set()
    np.save(tmp_path / "images.npy", images)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, numpy as np, mlflow\n"
        "model = mlflow.pyfunc.load_model('models:/user-net@champion')\n"
        "np.save(sys.argv[2], model.predict(np.load(sys.argv[1])))\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs' / STORE_FILE}",
        "PYTHONPATH": str(REPO),  # mlp-lab itself, and not the user's project
    }
    env.pop("MLP_LAB_CODE_DIRS", None)
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "images.npy"), str(tmp_path / "probs.npy")],
        env=env,
        check=True,
        timeout=300,
        cwd=elsewhere,
    )
    probs = np.load(tmp_path / "probs.npy")
    assert probs.shape == (200, 10)
    accuracy = float((probs.argmax(1) == labels).mean())
    print(f"fresh-interpreter MLflow accuracy {accuracy:.4f}, summary.json test/acc {summary['test/acc']:.4f}")
    assert accuracy == pytest.approx(summary["test/acc"], abs=1e-9)
    assert 0.3 < summary["test/acc"] < 1  # it learned something, and not everything

    # mlp-lab's own loader of a registered model takes the code logged with it, in this process too.
    monkeypatch.setattr(usercode, "CODE_DIRS", [])
    evaluated = runner.invoke(app, ["evaluate", "models:/user-net@champion", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(summary["test/acc"], abs=1e-9)


def test_a_table_models_pyfunc_standardises_raw_rows_as_training_did():
    import torch

    from mlp_lab.mlflow_model import MLPLabModel

    pyfunc = MLPLabModel()
    pyfunc.model = torch.nn.Linear(2, 3)
    # A table's facts as its checkpoint records them: per-feature mean and std of the training split.
    pyfunc.meta = {"features": ["radius", "texture"], "image_shape": [2, 1, 1], "mean": [1.0, 10.0], "std": [2.0, 5.0]}
    raw = np.array([[3.0, 20.0], [1.0, 10.0]])
    expected = torch.softmax(pyfunc.model(torch.tensor([[1.0, 2.0], [0.0, 0.0]])), 1).detach().numpy()
    np.testing.assert_allclose(pyfunc.predict(None, raw), expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(pyfunc.predict(None, raw.astype(np.int64)), expected, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"^expected rows of 2 numbers, got dtype <U1$"):
        pyfunc.predict(None, np.array([["a", "b"]]))
