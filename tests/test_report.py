"""Reports: interval and verdict arithmetic on known values; numbers equal the run directories."""

import json
import math

import pytest
from conftest import write_study
from typer.testing import CliRunner

from mlp_lab import rundir
from mlp_lab.ablation import compare, load_study, plan
from mlp_lab.cli import app
from mlp_lab.report import build_report, mean_std, paired_difference, t_interval


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
    assert json.loads((out / "report.json").read_text())["arms"][0]["arm"] == "none"
    # Rebuilding from the run directories alone gives the same numbers.
    assert build_report(load_study(write_study(tmp_path, tiny_config)))["arms"] == report["arms"]


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
