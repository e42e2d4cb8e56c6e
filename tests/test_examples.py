"""The examples/ folder as a user runs it: every file validates, and the studies' reports say what
the issue's done-when asks (the student's class, arguments and file hash; paired intervals).

Each test works on a copy of examples/ in tmp_path, its data written there by the examples' own
scripts (scikit-learn's bundled tables and digits), FashionMNIST a small synthetic copy in the real
format through $MLP_LAB_DATA; the runs are shortened with --set, as a user would for a quick look.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_idx_dataset
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import load_config
from mlp_lab.config.targets import content_sha256
from mlp_lab.core.yamlfile import read_yaml_mapping
from mlp_lab.studies.ablation import load_study

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def written_examples(tmp_path_factory) -> Path:
    """examples/ with its data written by its own scripts, once per test process (each script
    imports scikit-learn: seconds a test)."""
    copy = tmp_path_factory.mktemp("written") / "examples"
    shutil.copytree(REPO / "examples", copy, ignore=shutil.ignore_patterns("*.csv", "digits"))
    for script in ("tabular/write_csv.py", "images/write_pngs.py"):
        subprocess.run([sys.executable, str(copy / script)], check=True, capture_output=True)
    return copy


@pytest.fixture
def examples(written_examples, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the written examples/ for each test, the working directory its parent."""
    shutil.copytree(written_examples, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "examples"


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def test_every_example_file_validates_and_says_how_to_run_it(examples):
    files = sorted(examples.glob("*/*.yaml"))
    assert len(files) == 6
    for path in files:
        assert read_yaml_mapping(path) and path.read_text().startswith("# Run: "), path
        if "arms" in read_yaml_mapping(path):
            study = load_study(path)
            assert study.output_dir.parts[0] == "runs" and study.output_dir.name == path.stem
        else:
            load_config(path)
    student = load_config(examples / "student" / "student.yaml")
    assert student.model.kind == "user" and student.model.parsed.label == "my_mlp.py:ParameterizedMLP"
    assert student.model.code_sha256 == content_sha256(examples / "student" / "my_mlp.py")
    cnn = load_study(examples / "images" / "mlp_vs_cnn.yaml").arm("cnn").config.model
    assert cnn.kind == "user" and cnn.parsed.label == "cnn.py:SmallCNN"


@pytest.mark.slow
def test_the_student_ladder_report_names_the_class_its_args_and_the_file_hash(examples, tmp_path, monkeypatch):
    data = tmp_path / "datasets"
    write_idx_dataset(data / "fashion_mnist", n_train=300, n_test=100)
    monkeypatch.setenv("MLP_LAB_DATA", str(data))
    _cli("compare", "examples/student/ladder.yaml", "--seeds", "0", "--set", "train.epochs=1")
    md = (tmp_path / "runs" / "student" / "ladder" / "report.md").read_text()
    code = content_sha256(examples / "student" / "my_mlp.py")[:12]
    args = "hidden_sizes=[256, 128], activation=relu, dropout={}, batch_norm={}"
    assert f"| plain | `my_mlp.py:ParameterizedMLP` | {args.format('0.0', 'false')} | {code} | – |" in md
    assert f"| dropout | `my_mlp.py:ParameterizedMLP` | {args.format('0.2', 'false')} | {code} | – |" in md
    assert f"| batch_norm | `my_mlp.py:ParameterizedMLP` | {args.format('0.0', 'true')} | {code} | – |" in md
    assert "`train.epochs=1`" in md  # the --set, said
    # TensorBoard's HParams row of a run: the class by label, each argument a column, real metrics.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(tmp_path / "runs" / "student" / "ladder" / "dropout" / "seed-0"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model.target"].string_value == "my_mlp.py:ParameterizedMLP"
    assert hparams["model.args.dropout"].number_value == 0.2 and hparams["model.args.batch_norm"].bool_value is False
    assert hparams["model.code_sha256"].string_value.startswith(code)
    summary = json.loads((tmp_path / "runs" / "student" / "ladder" / "dropout" / "seed-0" / "summary.json").read_text())
    assert events.Scalars("test/acc")[-1].value == pytest.approx(summary["test/acc"])


@pytest.mark.slow
def test_the_tabular_study_over_three_seeds_has_paired_intervals(examples, tmp_path):
    _cli("compare", "examples/tabular/regularization.yaml", "--set", "train.epochs=3")
    out = tmp_path / "runs" / "tabular" / "regularization"
    report = json.loads((out / "report.json").read_text())
    rows = {row["arm"]: row for row in report["arms"]}
    assert set(rows) == {"none", "dropout", "batch_norm"}
    for arm in ("dropout", "batch_norm"):
        row = rows[arm]
        assert row["paired_seeds"] == 3 and row["ci_low"] <= row["diff_vs_reference"] <= row["ci_high"], row
    md = (out / "report.md").read_text()
    assert "| arm | seeds | difference (pp) | 95% CI (pp) | verdict |" in md
    fingerprint = content_sha256(examples / "tabular" / "breast_cancer.csv")[:12]
    assert f"| none | built-in mlp | – | – | csv `breast_cancer.csv` (fingerprint {fingerprint}) |" in md
    assert "dataset: breast_cancer" in md


@pytest.mark.slow
def test_the_image_folder_study_sets_a_user_cnn_against_the_built_in_mlp(examples, tmp_path):
    _cli("compare", "examples/images/mlp_vs_cnn.yaml", "--seeds", "0", "--set", "train.epochs=1")
    md = (tmp_path / "runs" / "images" / "mlp_vs_cnn" / "report.md").read_text()
    code = content_sha256(examples / "images" / "cnn.py")[:12]
    digits = content_sha256(examples / "images" / "digits", (".png",))[:12]
    assert (
        f"| cnn | `cnn.py:SmallCNN` | channels=[16, 32], dropout=0.0 | {code} | folder `digits` (fingerprint {digits}) |"
        in md
    )
    assert f"| mlp | built-in mlp | – | – | folder `digits` (fingerprint {digits}) |" in md


def test_list_names_a_user_model_by_label_and_code_hash(examples):
    from mlp_lab.studies.catalog import list_configs, list_studies

    code = content_sha256(examples / "student" / "my_mlp.py")[:12]
    entries = {e["name"]: e for e in list_configs(examples / "student")}
    assert entries["student"]["detail"] == (
        f"fashion_mnist, my_mlp.py:ParameterizedMLP (sha256 {code}), runs/student/student"
    )
    entries = {e["name"]: e for e in list_studies(examples / "images")}
    assert entries["mlp_vs_cnn"]["detail"].endswith(
        f"digits, cnn.py:SmallCNN (sha256 {content_sha256(examples / 'images' / 'cnn.py')[:12]})"
    )
