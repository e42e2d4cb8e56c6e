"""Reports: interval and verdict arithmetic on known values; numbers equal the run directories."""

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import write_study  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from mlp_lab.cli import app  # noqa: E402
from mlp_lab.inspect.plots import curves_figure  # noqa: E402
from mlp_lab.runs import rundir  # noqa: E402
from mlp_lab.studies.ablation import compare, load_study, plan  # noqa: E402
from mlp_lab.studies.provenance import StudyFacts  # noqa: E402
from mlp_lab.studies.report import build_report, collect, lr_figure, mean_std, paired_difference, t_interval  # noqa: E402


def test_t_interval_on_known_values():
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    assert t_interval([5.0]) is None
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, None)


def test_verdicts():
    ref = {0: 0.80, 1: 0.82, 2: 0.81}
    helps = paired_difference({0: 0.85, 1: 0.86, 2: 0.87}, ref)
    assert helps.verdict == "helps" and helps.n == 3 and helps.mean == pytest.approx(0.05)
    assert helps.low > 0
    assert paired_difference({0: 0.70, 1: 0.71, 2: 0.73}, ref).verdict == "hurts"
    unclear = paired_difference({0: 0.81, 1: 0.81, 2: 0.82}, ref)
    assert unclear.verdict == "no clear effect" and unclear.low < 0 < unclear.high
    one = paired_difference({0: 0.9}, ref)
    assert one.verdict == "one seed: no interval can be given" and one.low is None
    # Only shared seeds are paired.
    assert paired_difference({0: 0.9, 7: 0.1}, ref).n == 1


@pytest.mark.slow
def test_report_numbers_equal_the_run_directories(tiny_config, tmp_path):
    exp = load_study(write_study(tmp_path, tiny_config))
    compare(exp, log=lambda _: None)
    report = build_report(exp)
    summaries = {(s.arm, s.seed): rundir.read_json(s.run_dir / "summary.json") for s in plan(exp)}
    for row in report["arms"]:
        accs = [summaries[(row["arm"], seed)]["test/acc"] for seed in exp.seeds]
        assert row["test_acc_mean"] == pytest.approx(sum(accs) / len(accs), abs=1e-12)
        assert row["test_acc_std"] == pytest.approx(
            math.sqrt(sum((a - row["test_acc_mean"]) ** 2 for a in accs) / (len(accs) - 1)), abs=1e-12
        )
        assert row["epochs_run_mean"] == 3 and row["seeds"] == 2
    half = report["arms"][1]
    diffs = [summaries[("half", s)]["test/acc"] - summaries[("none", s)]["test/acc"] for s in exp.seeds]
    assert half["diff_vs_reference"] == pytest.approx(sum(diffs) / 2)
    out = exp.output_dir
    for name in (
        "report.md",
        "report.csv",
        "report.json",
        "val_curves.png",
        "overfitting.png",
        "lr.png",
        "test_acc.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "| half |" in md and half["verdict"] in md and "![" in md
    assert "- Step engine: `hand` (numerics version 4)." in md  # every run a plain MLP: one line
    assert json.loads((out / "report.json").read_text())["arms"][0]["arm"] == "none"
    # Rebuilding from the run directories alone gives the same numbers.
    assert build_report(load_study(write_study(tmp_path, tiny_config)))["arms"] == report["arms"]


def test_the_report_says_per_arm_which_engine_trained_when_arms_differ():
    assert StudyFacts([0], {}, {}, {}, "base.yaml", None).engine_lines() == []  # runs before the engine was recorded
    hand, autograd = "`hand` (numerics version 4)", "`autograd` (numerics version 4)"
    facts = StudyFacts([0], {}, {}, {}, "base.yaml", None, engines={"off": [hand], "on": [autograd]})
    assert facts.engine_lines() == [f"Step engines differ by arm: `off`: {hand}; `on`: {autograd}."]
    assert f"Step engines differ by arm: `off`: {hand}; `on`: {autograd}." in facts.lines()


@pytest.mark.slow
def test_cli_compare_report_and_list(tiny_config, tmp_path, monkeypatch):
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "study" in listed.output and "new" in listed.output
    first = runner.invoke(app, ["compare", "study", "--seeds", "0"])
    assert first.exit_code == 0, first.output
    assert "[2/2 done, 0 left]" in first.output and "report:" in first.output
    assert "epoch 3/3" in first.output
    again = runner.invoke(app, ["compare", "study", "--seeds", "0"])
    assert again.output.count("skipped") == 2
    assert runner.invoke(app, ["report", "study"]).exit_code == 0
    partial = runner.invoke(app, ["list"])
    assert "partial" in partial.output and "2/4 runs done" in partial.output
    missing = runner.invoke(app, ["compare", "nope"])
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.stderr
    bad_seeds = runner.invoke(app, ["compare", "study", "--seeds", "a,b"])
    assert bad_seeds.exit_code == 2 and "--seeds" in bad_seeds.stderr


@pytest.mark.slow
def test_a_report_says_when_runs_of_one_arm_ran_with_different_sets(tiny_config, tmp_path, monkeypatch):
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["compare", "study", "--seeds", "0", "--set", "train.epochs=1"])
    second = runner.invoke(app, ["compare", "study", "--seeds", "1", "--set", "train.epochs=2"])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    # The report over the study file's seeds (0 and 1), rebuilt without any --set, pools both runs.
    assert runner.invoke(app, ["report", "study"]).exit_code == 0
    md = (tmp_path / "runs" / "study" / "report.md").read_text()
    for arm in ("none", "half"):
        assert (
            f"- **Mixed configs**: arm `{arm}`'s runs disagree in `train.epochs` (seed 0: 1; seed 1: 2); "
            f"they are pooled here." in md
        )
    assert "- Runs differ from the study file in (a --set): `train.epochs=1 / 2`." in md
    assert "- Seeds with runs: 0, 1." in md
    assert "| none | `model.dropout=0.0` | 2 |" in md and "| 1.5 |" in md  # epochs run: the mean of 1 and 2
    ran = json.loads((tmp_path / "runs" / "study" / "report.json").read_text())["ran"]
    assert ran["conflicts"] == {arm: {"train.epochs": {"0": 1, "1": 2}} for arm in ("none", "half")}
    # One --set for every run: no conflict, the override said once.
    again = runner.invoke(app, ["compare", "study", "--seeds", "0,1", "--set", "train.epochs=1"])
    assert again.exit_code == 0, again.output
    md = (tmp_path / "runs" / "study" / "report.md").read_text()
    assert "Mixed configs" not in md and "- Runs differ from the study file in (a --set): `train.epochs=1`." in md
    assert "| 1 | 1 | 25,450 |" in md  # best epoch and epochs run as whole numbers


def test_the_lr_plot_shows_every_schedule_on_a_log_axis_with_whole_epochs(tiny_config, tmp_path):
    path = write_study(
        tmp_path,
        tiny_config,
        factor="train",
        reference="adam_cosine",
        seeds=[0],
        arms={
            "adam_cosine": {"train.scheduler.name": "cosine", "train.epochs": 4},
            "sgd": {"train.optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "train.epochs": 4},
        },
    )
    exp = load_study(path)
    compare(exp, log=lambda _: None)
    fig = lr_figure(exp, collect(exp))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    cosine, sgd = lines["adam_cosine"].get_ydata(), lines["sgd"].get_ydata()
    assert list(sgd) == [0.05] * 4 and list(lines["sgd"].get_xdata()) == [1, 2, 3, 4]
    # The cosine decay spans more than a decade of the visible axis: it is not flattened into the floor.
    low, high = ax.get_ylim()
    assert cosine[0] == 1e-3 and cosine[-1] < cosine[0] / 5 and low < cosine[-1] and high > 0.05
    assert math.log10(cosine[0] / cosine[-1]) / math.log10(high / low) > 0.15
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "study" in ax.get_title() and "seed 0" in ax.get_title()
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # beside the axes
    plt.close(fig)
    # A single run's curves: whole epochs on every panel, the LR panel on a log axis once it spans decades.
    history = rundir.read_metrics(exp.output_dir / "adam_cosine" / "seed-0")
    curves = curves_figure(history, "t")
    for panel in curves.axes:
        assert all(float(t).is_integer() for t in panel.get_xticks())
    assert curves.axes[2].get_yscale() == "linear"  # 1e-3 down to 1.5e-4 at epoch 4: under a decade
    plt.close(curves)
