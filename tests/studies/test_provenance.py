"""What ran: a study's base against the plain config, and the sentences a report opens with."""

from pathlib import Path

import pytest

from mlp_lab.studies.provenance import StudyFacts, base_and_plain

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["dropout", "batch_norm", "optimizer", "lr_schedule"])
def test_the_single_topic_studies_say_their_base_is_the_tuned_baseline(name):
    base, differs, overrides = base_and_plain(REPO / "experiments" / f"{name}.yaml")
    assert base == "../configs/baseline.yaml" and overrides == {"train.epochs": 20}
    assert differs == {
        "model.dropout": (0.0, 0.2),
        "train.epochs": (20, 30),
        "train.scheduler.name": ("constant", "cosine"),
    }


def test_the_ladder_is_on_plain_and_its_report_opens_by_saying_so():
    base, differs, overrides = base_and_plain(REPO / "experiments" / "ladder.yaml")
    assert (base, differs, overrides) == ("../configs/plain.yaml", {}, {})
    facts = StudyFacts([0], {"train.epochs": [2]}, {}, overrides, base, differs, {"threads": [2]})
    assert facts.lines() == [
        "Seeds with runs: 0.",
        "Base: `../configs/plain.yaml`, the course's plain model.",
        "Runs differ from the study file in (a --set): `train.epochs=2`.",
        "Computed with threads 2.",
    ]


def test_mixed_configs_and_booleans_read_as_the_yaml_has_them():
    facts = StudyFacts(
        [0, 1],
        {"model.batch_norm": [True]},
        {"on": {"model.batch_norm": {0: True, 1: False}}},
        {},
        "../configs/plain.yaml",
        None,
    )
    lines = facts.lines()
    assert lines[1] == "Base: `../configs/plain.yaml`."  # no plain config to compare with
    assert lines[2] == "Runs differ from the study file in (a --set): `model.batch_norm=true`."
    assert lines[3] == (
        "**Mixed configs**: arm `on`'s runs disagree in `model.batch_norm` (seed 0: true; seed 1: false); "
        "they are pooled here."
    )


def _user_study(tmp_path: Path) -> Path:
    """A student's model file, a config naming it on a CSV table, and a study over its dropout."""
    (tmp_path / "my_mlp.py").write_text((REPO / "examples" / "student" / "my_mlp.py").read_text())
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    (tmp_path / "student.yaml").write_text(
        "name: student\n"
        "data: {source: {kind: csv, path: table.csv, label: label}}\n"
        "model: {target: my_mlp.py:ParameterizedMLP, args: {hidden_sizes: [8], dropout: 0.0}}\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n"
    )
    (tmp_path / "study.yaml").write_text(
        "base: student.yaml\nfactor: model.args.dropout\nreference: plain\nseeds: [0, 1]\n"
        "arms: {plain: {}, dropout: {model.args.dropout: 0.2}}\n"
    )
    return tmp_path / "study.yaml"


def _fake_runs(study, accuracy: dict[str, float]) -> None:
    """Finished run directories as training leaves them (config.yaml, metrics.csv, summary.json),
    without training: the report reads nothing else."""
    from mlp_lab.config.metrics import METRICS_CSV_COLUMNS
    from mlp_lab.config.schema import config_to_yaml
    from mlp_lab.runs import rundir
    from mlp_lab.studies.ablation import plan

    for spec in plan(study):
        spec.run_dir.mkdir(parents=True)
        (spec.run_dir / rundir.CONFIG_FILE).write_text(config_to_yaml(spec.config))
        row = {"epoch": 1, "train/loss": 0.5, "train/acc": 0.8, "val/loss": 0.5, "val/acc": 0.8, "lr": 1e-3}
        row["seconds"] = 0.1
        (spec.run_dir / rundir.METRICS_FILE).write_text(
            ",".join(METRICS_CSV_COLUMNS) + "\n" + ",".join(str(row[c]) for c in METRICS_CSV_COLUMNS) + "\n"
        )
        acc = accuracy[spec.arm] + 0.01 * spec.seed
        summary = {"status": "completed", "test/acc": acc, "test/loss": 0.4, "best/val_acc": 0.8}
        summary |= {"best/val_loss": 0.5, "best_epoch": 1, "epochs_run": 1, "wall_time_s": 1.0}
        summary |= {"num_parameters": 42, "dataset": "table"}
        rundir.write_json(spec.run_dir / rundir.SUMMARY_FILE, summary)


def test_a_report_names_each_arms_user_code_args_and_hash_and_its_data(tmp_path):
    from mlp_lab.config.targets import content_sha256
    from mlp_lab.studies.ablation import load_study
    from mlp_lab.studies.report import build_report

    study = load_study(_user_study(tmp_path))
    _fake_runs(study, {"plain": 0.80, "dropout": 0.82})
    code = content_sha256(tmp_path / "my_mlp.py")[:12]
    data = content_sha256(tmp_path / "table.csv")[:12]
    report = build_report(study)
    md = (study.output_dir / "report.md").read_text()
    assert "| arm | model | arguments | code sha256 | data |" in md
    assert (
        f"| plain | `my_mlp.py:ParameterizedMLP` | hidden_sizes=[8], dropout=0.0 | {code} | "
        f"csv `table.csv` (fingerprint {data}) |" in md
    )
    assert f"| dropout | `my_mlp.py:ParameterizedMLP` | hidden_sizes=[8], dropout=0.2 | {code} |" in md
    assert "dataset: table" in md
    # The base's differences from plain name the file, not where the project lies, and no hash.
    base_line = next(line for line in md.splitlines() if line.startswith("- Base:"))
    # A user's model and data where plain has built-in ones: one difference each, not a key per null.
    assert (
        "model=my_mlp.py:ParameterizedMLP(hidden_sizes=[8], dropout=0.0) (plain: built-in mlp)" in base_line
        and str(tmp_path) not in base_line
    )
    assert "data.source=csv table.csv (plain: fashion_mnist)" in base_line and "sha256" not in base_line
    assert "(plain: null)" not in base_line and "model.args" not in base_line
    assert "Every run has the study file's config (no --set)." in md
    assert report["ran"]["code"]["dropout"] == [
        {
            "model": "`my_mlp.py:ParameterizedMLP`",
            "args": "hidden_sizes=[8], dropout=0.2",
            "code_sha256": code,
            "data": f"csv `table.csv` (fingerprint {data})",
        }
    ]

    # The student edits the file: the report still says which version the runs used (the
    # recorded hash), and no "--set" is made up from the hash that changed.
    (tmp_path / "my_mlp.py").write_text((tmp_path / "my_mlp.py").read_text() + "\n# edited\n")
    build_report(load_study(tmp_path / "study.yaml"))
    md = (study.output_dir / "report.md").read_text()
    assert f"| {code} |" in md and "code_sha256" not in md
    assert "Every run has the study file's config (no --set)." in md


def test_built_in_models_on_built_in_data_have_no_code_and_data_section():
    facts = StudyFacts([0], {}, {}, {}, "base.yaml", None, code={"a": [{"kind": "mlp"}]})
    assert facts.code_lines() == []
    user = {"model": "`m.py:Net`", "args": "", "code_sha256": "0123456789ab"}
    lines = StudyFacts([0], {}, {}, {}, "base.yaml", None, code={"a": [{"kind": "mlp"}], "b": [user]}).code_lines()
    assert "| a | built-in mlp | – | – | – |" in lines and "| b | `m.py:Net` | – | 0123456789ab | – |" in lines
