"""The overview over every study, the suite verb, the ladder's one-factor-per-arm rule, the page in a browser."""

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.schema import config_to_dict
from mlp_lab.core.errors import ConfigError
from mlp_lab.studies.ablation import compare, load_study
from mlp_lab.studies.overview import build_overview, load_studies, study_names

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def write_studies(tmp_path: Path, tiny_config) -> Path:
    """Two tiny studies over the synthetic data (a ladder and a width study) and one never run."""
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir(exist_ok=True)
    cfg = tiny_config(
        model={"hidden_sizes": [32], "dropout": 0.0}, train={"epochs": 2, "batch_size": 32, "device": "cpu"}
    )
    base.write_text(yaml.safe_dump(config_to_dict(cfg)))
    studies = {
        "width": {
            "description": "Is a wider hidden layer better?",
            "factor": "model.hidden_sizes",
            "reference": "narrow",
            "arms": {"narrow": {}, "wide": {"model.hidden_sizes": [64]}},
        },
        "ladder": {
            "description": "One technique at a time on the plain tiny model.",
            "factor": ["model.dropout", "train.l2"],
            "one_factor_per_arm": True,
            "reference": "plain",
            "arms": {"plain": {}, "dropout": {"model.dropout": 0.3}, "l2": {"train.l2": 1.0e-3}},
        },
        "unrun": {
            "description": "Never run.",
            "factor": "model.dropout",
            "reference": "a",
            "arms": {"a": {}, "b": {"model.dropout": 0.5}},
        },
    }
    folder = tmp_path / "experiments"
    folder.mkdir(exist_ok=True)
    for name, study in studies.items():
        study = {"base": "../configs/tiny.yaml", "seeds": [0, 1], **study}
        (folder / f"{name}.yaml").write_text(
            f"# Run: mlp-lab compare {name}\n" + yaml.safe_dump(study, sort_keys=False)
        )
    return folder


def run_studies(tmp_path: Path, tiny_config) -> Path:
    folder = write_studies(tmp_path, tiny_config)
    for name in ("ladder", "width"):
        compare(load_study(name, studies_dir=folder), log=lambda _: None)
    return folder


def test_ladder_rejects_an_arm_that_changes_two_factors(tmp_path):
    raw = yaml.safe_load((REPO / "experiments" / "ladder.yaml").read_text())
    raw["base"] = str(REPO / "configs" / "plain.yaml")
    raw["arms"]["dropout_and_l2"] = {"model.dropout": 0.2, "train": {"l2": 1.0e-4}}
    raw["arms"]["stray"] = {"data.val_fraction": 0.2}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert info.value.errors == [
        f"{path}: arms.dropout_and_l2: changes 2 factors (model.dropout, train.l2); one_factor_per_arm allows one",
        f"{path}: arms.stray: key 'data.val_fraction' is outside the factor ({', '.join(raw['factor'])})",
    ]
    # Without the rule, several keys of several factors in one arm stay allowed (as in older files).
    raw["one_factor_per_arm"] = False
    del raw["arms"]["stray"]
    path.write_text(yaml.safe_dump(raw))
    assert load_study(path).arm("dropout_and_l2").config.train.l2 == 1.0e-4


def test_the_shipped_ladder_changes_one_factor_per_arm():
    exp = load_study(REPO / "experiments" / "ladder.yaml")
    plain = exp.arm("plain").config
    assert plain.model.dropout == 0 and plain.train.l1 == plain.train.l2 == 0 and not plain.model.batch_norm
    assert plain.train.scheduler.name == "constant" and plain.train.early_stopping.patience is None
    assert len(exp.arms) == 10 and all(a.changes for a in exp.arms if a.name != "plain")
    assert study_names(REPO / "experiments")[:5] == [
        "ladder",
        "mnist_linear_vs_mlp",
        "mlp_vs_cnn",
        "mlp_vs_cnn_fashion",
        "permuted_pixels",
    ]
    linear = load_study(REPO / "experiments" / "mnist_linear_vs_mlp.yaml")
    assert linear.arm("logistic").config.model.hidden_sizes == [] and linear.arms[0].config.data.dataset == "mnist"


@pytest.mark.slow
def test_overview_has_every_study_the_summary_and_embedded_figures(tiny_config, tmp_path):
    folder = run_studies(tmp_path, tiny_config)
    overview = build_overview(load_studies(studies_dir=folder))
    assert overview["studies"] == ["ladder", "width"] and overview["skipped"] == ["unrun"]
    runs = tmp_path / "runs"
    md = (runs / "index.md").read_text()
    # The ladder first, in the summary and in the sections; every non-reference arm has a summary row.
    assert md.index("## ladder") < md.index("## width")
    summary = md[md.index("## Summary") : md.index("## ladder")]
    rows = [line for line in summary.splitlines() if line.startswith("| ladder") or line.startswith("| width")]
    assert [r.split(" | ")[0:2] for r in rows] == [
        ["| ladder", "dropout (model.dropout=0.3)"],
        ["| ladder", "l2 (train.l2=0.001)"],
        ["| width", "wide (model.hidden_sizes=[64])"],
    ]
    assert "Not run yet (no finished runs): unrun." in md
    assert "Full report: [ladder/report.md](ladder/report.md)" in md and (runs / "ladder" / "report.md").is_file()
    # The summary's numbers are the study report's (rebuilt from the run directories).
    report = yaml.safe_load((runs / "width" / "report.json").read_text())
    wide = next(a for a in report["arms"] if a["arm"] == "wide")
    assert f"{wide['diff_vs_reference'] * 100:+.2f}".replace("-", "−") in rows[2]
    assert wide["verdict"] in rows[2] and "×" in rows[2]
    page = (runs / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3  # the effects figure and each study's curves
    assert re.findall(r'<img[^>]+src="(?!data:)', page) == [], "every image is embedded"
    assert '<a href="ladder/report.md">' in page and '<h2 id="width">' in page
    assert "Is a wider hidden layer better?" in page and "One technique at a time" in page


def test_overview_without_any_runs_is_a_one_line_error(tiny_config, tmp_path, monkeypatch):
    write_studies(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "--all"])
    assert result.exit_code == 2 and "no study has finished runs yet" in result.stderr
    assert not (tmp_path / "runs" / "index.html").exists()
    both = CliRunner().invoke(app, ["report", "width", "--all"])
    assert both.exit_code == 2 and "give no EXPERIMENT" in both.stderr


@pytest.mark.slow
def test_cli_suite_runs_the_named_studies_then_report_all(tiny_config, tmp_path, monkeypatch):
    write_studies(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["suite", "width", "ladder", "--seeds", "0"])
    assert first.exit_code == 0, first.output
    assert "study 1/2 width" in first.output and "study 2/2 ladder" in first.output
    assert f"overview: {tmp_path / 'runs' / 'index.md'} and {tmp_path / 'runs' / 'index.html'}" in first.output
    again = runner.invoke(app, ["suite", "width", "ladder", "--seeds", "0"])
    assert again.exit_code == 0 and again.output.count(": done (skipped;") == 5  # finished runs are not trained again
    everything = runner.invoke(app, ["report", "--all"])
    assert everything.exit_code == 0, everything.output
    assert "studies: ladder, width" in everything.output and "not run yet: unrun" in everything.output
    unknown = runner.invoke(app, ["suite", "nope"])
    assert unknown.exit_code == 2 and "no study named 'nope'" in unknown.stderr


@pytest.mark.slow
def test_overview_page_renders_in_headless_chromium(tiny_config, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from PIL import Image

    build_overview(load_studies(studies_dir=run_studies(tmp_path, tiny_config)))
    page = tmp_path / "runs" / "index.html"
    # Moved away from its run directories: a self-contained page still shows everything.
    alone = tmp_path / "handed_in" / "index.html"
    alone.parent.mkdir()
    shutil.copy(page, alone)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            alone.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    white = sum(histogram[250:])
    assert image.size == (1200, 2400)
    # Text, tables and the embedded figures: a real share of the page is not background.
    assert white / (image.width * image.height) < 0.97, "the screenshot is (almost) blank"
    assert sum(histogram[:100]) > 2000, "no dark pixels: no text was drawn"


def page_text(html_page: str) -> str:
    """What a reader of the HTML page sees: the text without tags."""
    inline = re.sub(r"</?(code|b|em|a)\b[^>]*>", "", re.sub(r'src="[^"]*"', "", html_page))
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline)))


def test_overview_says_the_seeds_that_ran_and_the_set_they_ran_with(tiny_config, tmp_path, monkeypatch):
    write_studies(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ran = runner.invoke(app, ["compare", "width", "--seeds", "0", "--set", "train.epochs=1"])
    assert ran.exit_code == 0, ran.output
    # report --all is given no --set: what it says comes from the run directories.
    built = runner.invoke(app, ["report", "--all"])
    assert built.exit_code == 0, built.output
    runs = tmp_path / "runs"
    md = (runs / "index.md").read_text()
    text = page_text((runs / "index.html").read_text())
    for page in (md, text):
        assert "width: seed 0 · base ../configs/tiny.yaml · --set train.epochs=1" in page.replace("`", "")
        assert "Seeds with runs: 0." in page and "seeds with runs: 0" in page
        assert "Runs differ from the study file in (a --set): train.epochs=1." in page.replace("`", "")
        # The study file lists seeds 0 and 1; only 0 ran, and nothing claims seed 1.
        claimed = re.findall(r"[Ss]eeds?(?: with runs)?:? ((?:\d+, )*\d+)", page)
        assert claimed and all(seeds == "0" for seeds in claimed), claimed
        assert "not run yet" not in page.split("Not run yet (no finished runs)")[0]
        assert page.index("## width" if page is md else "width MNIST") < page.index("Not run yet (no finished runs)")
    width = md[md.index("## width") :]
    assert "| narrow | `(base)` | 1 |" in width and width.count(" | 1 | ") >= 2  # one seed, one epoch each
    report = (runs / "width" / "report.md").read_text()
    assert report.splitlines()[2:4] == [
        "- Seeds with runs: 0.",
        "- Base: `../configs/tiny.yaml`, which differs from `configs/plain.yaml` in data.dataset=mnist "
        "(plain: fashion_mnist), data.val_fraction=0.2 (plain: 0.1), model.hidden_sizes=[32] (plain: [256, 128]), "
        "train.epochs=2 (plain: 20), train.batch_size=32 (plain: 128), train.early_stopping.monitor=val/loss "
        "(plain: val/acc).",
    ]
    assert "numerics version 4" in report and "threads " in report and "machine " in report


def test_report_all_in_a_folder_without_experiments_finds_the_shipped_studies(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    nothing = runner.invoke(app, ["report", "--all"])
    assert nothing.exit_code == 2 and "no study has finished runs yet (ladder, mnist_linear_vs_mlp" in nothing.stderr
    tiny = tiny_config()
    sets = [f"data.root={tiny.data.root}", "data.dataset=mnist", "data.download=false", "data.val_fraction=0.2"]
    sets += ["model.hidden_sizes=[16]", "train.epochs=1", "train.batch_size=64", "train.device=cpu"]
    ran = runner.invoke(app, ["compare", "batch_norm", "--seeds", "0", *[a for s in sets for a in ("--set", s)]])
    assert ran.exit_code == 0, ran.output
    built = runner.invoke(app, ["report", "--all"])
    assert built.exit_code == 0, built.output
    assert "studies: batch_norm" in built.output and "no study files" not in built.output + built.stderr
    md = (tmp_path / "runs" / "index.md").read_text()
    assert md.index("## batch_norm") < md.index("Not run yet (no finished runs): ladder, ")
    # The shipped study's base is the tuned baseline, not the plain model: the page says how they differ.
    assert "Base: `../configs/baseline.yaml`, which differs from `configs/plain.yaml` in model.dropout=0.2" in md
    assert "train.scheduler.name=cosine (plain: constant)" in md


def test_the_overviews_what_ran_line_names_user_code_and_data_by_hash():
    from types import SimpleNamespace

    from mlp_lab.studies.findings import what_ran
    from mlp_lab.studies.provenance import StudyFacts

    user = {"model": "`my_mlp.py:ParameterizedMLP`", "args": "dropout=0.2", "code_sha256": "3e2a3d357451"}
    data = {"kind": "mlp", "data": "csv `table.csv` (fingerprint ce2dbe548442)"}
    ran = StudyFacts([0], {}, {}, {}, "student.yaml", None, code={"a": [user], "b": [user, data]})
    line = what_ran(SimpleNamespace(ran=ran, study=SimpleNamespace(name="ladder")))
    assert line == (
        "ladder: seed 0 · base `student.yaml` · code `my_mlp.py:ParameterizedMLP` sha256 3e2a3d357451 · "
        "data csv `table.csv` (fingerprint ce2dbe548442)"
    )
