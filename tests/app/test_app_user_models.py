"""The app with the user's own models and data: a user model's run is listed by its target and
drawn on like any digits model; a model of a user's image folder takes uploads (resized plainly)
and no canvas; a table model is listed and says in one line why the page has no input for it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from app_helpers import draw_shape, shapes_config, write_shapes_dataset
from user_code_helpers import write_user_net

from mlp_lab.app import draw_page, drawing, models
from mlp_lab.app import runs as app_runs
from mlp_lab.app.serve import RUNS_ENV
from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import config_to_dict
from mlp_lab.execution.procedure import start_run
from mlp_lab.inspect.predict import Predictor
from mlp_lab.runs import rundir
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.context import RunContext

MAIN = Path(__file__).resolve().parents[2] / "mlp_lab" / "app" / "main.py"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """(root, data directory, finished built-in shapes run) shared by the module."""
    root = tmp_path_factory.mktemp("shapes-user")
    data = write_shapes_dataset(root / "idx")
    result = start_run(shapes_config(root, epochs=4), RunContext(data_dirs=(str(data),), threads=1))
    return root, data, result.run_dir


@pytest.fixture
def app_test(monkeypatch):
    from streamlit.testing.v1 import AppTest

    def make(runs: Path, page: str = "Draw"):
        monkeypatch.setenv(RUNS_ENV, str(runs))
        test = AppTest.from_file(str(MAIN), default_timeout=60)
        test.query_params["page"] = page
        return test.run()

    return make


def _with_data_facts(source: Path, run_dir: Path, data_source: dict, **facts) -> Path:
    """A copy of a finished run as if trained on a user's `data_source`: its config names it and
    its checkpoints say its data facts (the weights fit both)."""
    shutil.copytree(source, run_dir)
    config = yaml.safe_load((run_dir / rundir.CONFIG_FILE).read_text())
    config["data"] = {key: value for key, value in config["data"].items() if key != "dataset"}
    config["data"]["source"] = data_source
    (run_dir / rundir.CONFIG_FILE).write_text(yaml.safe_dump(config))
    for path in (run_dir / rundir.CHECKPOINT_DIR).glob("*.pt"):
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["data"] = {**checkpoint["data"], **facts}
        checkpoint["config"] = config  # as if trained with that config
        torch.save(checkpoint, path)
    return run_dir


def test_what_the_draw_page_offers_follows_the_data_not_the_model():
    assert models.picture_input({"dataset": "mnist", "image_shape": [1, 28, 28]}) == "draw"
    assert models.picture_input({"dataset": "fashion_mnist", "image_shape": [1, 28, 28]}) == "upload"
    assert models.picture_input({"dataset": "cifar10", "image_shape": [3, 32, 32]}) == "upload"
    assert models.picture_input({"dataset": "my_photos", "image_shape": [3, 64, 64]}) == "upload"  # a user's folder
    assert models.picture_input({"dataset": "cancer", "image_shape": [30, 1, 1]}) == "none"
    assert models.table_features({"dataset": "cancer", "image_shape": [30, 1, 1]}) == 30
    assert models.table_features({"dataset": "mnist", "image_shape": [1, 28, 28]}) is None


def test_a_table_model_is_listed_and_its_page_says_in_one_line_why_it_has_no_input(app_test, shapes, tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "cancer.csv").write_text("radius,target\n1.0,0\n2.0,1\n")  # named by the run's config
    csv = {"kind": "csv", "path": str(tmp_path / "cancer.csv"), "label": "target"}
    table = _with_data_facts(shapes[2], runs / "cancer", csv, dataset="cancer", image_shape=[784, 1, 1])
    page = app_test(runs)
    assert not page.exception and not page.error, [e.value for e in page.error]
    assert page.header[0].value == "A model of a table"
    assert [i.value for i in page.info] == [
        f"This model classifies rows of 784 features, not pictures, so this page has no input for it; "
        f"score its test rows with: mlp-lab evaluate {table}"
    ]
    assert not [r for r in page.radio if r.label == "Canvas"]
    listed = app_test(runs, "Runs")
    assert not listed.exception
    assert list(listed.dataframe[0].value["run"]) == ["cancer"] and list(listed.dataframe[0].value["dataset"]) == [
        "cancer"
    ]


def test_a_model_of_a_users_pictures_takes_uploads_resized_plainly_and_no_canvas(app_test, shapes, tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "pictures" / "ring").mkdir(parents=True)  # named by the run's config
    folder = {"kind": "folder", "path": str(tmp_path / "pictures"), "name": "my_shapes"}
    run_dir = _with_data_facts(shapes[2], runs / "folder", folder, dataset="my_shapes")
    page = app_test(runs)
    assert not page.exception and not page.error
    assert page.header[0].value == "Classify a picture"
    assert draw_page.UPLOAD_ONLY in [c.value for c in page.caption]
    assert not [r for r in page.radio if r.label == "Canvas"]
    assert page.selectbox[0].value.startswith("folder (my_shapes, ")
    assert page.caption[0].value.endswith("Preprocessing: a plain resize to the dataset's size.")
    # An upload, as the page reads it: the whole picture resized (the "plain" recipe).
    predictor = Predictor(load_model(run_dir))
    picture = draw_shape("horizontal", np.random.default_rng(3)).resize((28, 28))
    classified = drawing.classify(predictor, picture)
    assert classified.best["class"] in predictor.classes and len(classified.probabilities) == 10


@pytest.mark.slow
def test_a_user_models_run_is_listed_by_its_target_and_drawn_on_like_a_digits_model(app_test, shapes, tmp_path):
    root, data, _ = shapes
    net = write_user_net(tmp_path / "project", str(tmp_path))
    raw = config_to_dict(shapes_config(root, epochs=4))
    raw.update(name="mine", model={"target": f"{net}:Net", "args": {"hidden": 64}})
    raw["output"]["dir"] = str(tmp_path / "runs")
    start_run(validate_config(raw, "mine.yaml"), RunContext(data_dirs=(str(data),), threads=1, log=lambda _: None))
    (listed,) = app_runs.list_runs(tmp_path / "runs")
    assert listed.model == "my_net.py:Net" and listed.row()["model"] == "my_net.py:Net"
    runs_page = app_test(tmp_path / "runs", "Runs")
    assert not runs_page.exception and list(runs_page.dataframe[0].value["model"]) == ["my_net.py:Net"]
    page = app_test(tmp_path / "runs")
    assert not page.exception and not page.error
    assert page.selectbox[0].value.startswith("mine (mnist, my_net.py:Net, test acc")
    assert page.header[0].value == "Draw a digit" and [r for r in page.radio if r.label == "Canvas"]
    predictor = Predictor(load_model(tmp_path / "runs" / "mine"))
    upload = draw_shape("horizontal", np.random.default_rng(3), dark_on_light=True).convert("RGB")
    assert drawing.classify(predictor, upload).best["class"] == "2"
