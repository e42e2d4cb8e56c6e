"""What a user gets from `pip install mlp-lab`: names resolved from their own folders first, then
from the shipped copy (and told which file was used), `mlp-lab init`, and (slow) the built wheel
installed into a fresh virtual environment and run in an empty directory."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import write_idx_dataset
from typer.testing import CliRunner

from mlp_lab import __version__
from mlp_lab.cli import app
from mlp_lab.config.load import load_config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.shipped import FOLDERS, shipped_dir, write_copy
from mlp_lab.search.spec import load_search
from mlp_lab.studies.ablation import load_study
from mlp_lab.studies.catalog import list_configs, list_studies

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {folder: sorted(p.name for p in (REPO / folder).glob("*.yaml")) for folder in FOLDERS.values()}


def notice(kind: str, folder: str, name: str) -> str:
    return (
        f"using the shipped {kind} {shipped_dir(folder) / f'{name}.yaml'} "
        f"(no {folder}/{name}.yaml here; mlp-lab init DIR writes an editable copy)"
    )


@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
    """An empty working directory, as after `pip install` anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_name_resolves_to_the_shipped_copy_and_says_so_once(empty_dir, caplog):
    caplog.set_level(logging.INFO, logger="mlp_lab")
    cfg = load_config("baseline")
    study = load_study("early_stopping")
    search = load_search("fashion_search")
    assert cfg.name == "baseline" and study.path == shipped_dir("experiments") / "early_stopping.yaml"
    assert search.path == shipped_dir("searches") / "fashion_search.yaml"
    assert caplog.messages == [
        notice("config", "configs", "baseline"),
        notice("study", "experiments", "early_stopping"),
        notice("search", "searches", "fashion_search"),
    ]
    # The study's and search's `base: ../configs/baseline.yaml` is the shipped one beside them.
    shipped_base = load_config(shipped_dir("configs") / "baseline.yaml")
    assert study.arms[0].config.model.hidden_sizes == shipped_base.model.hidden_sizes
    assert search.base_config.data.dataset == shipped_base.data.dataset


def test_the_users_folder_wins_and_its_base_is_the_users(empty_dir, caplog):
    write_copy(empty_dir)
    base = empty_dir / "configs" / "baseline.yaml"
    base.write_text(base.read_text().replace("hidden_sizes: [256, 128]", "hidden_sizes: [64]"))
    caplog.set_level(logging.INFO, logger="mlp_lab")
    assert load_config("baseline").model.hidden_sizes == [64]
    study = load_study("dropout")
    assert study.path == Path("experiments/dropout.yaml")
    assert {arm.config.model.hidden_sizes == [64] for arm in study.arms} == {True}
    assert caplog.messages == []  # nothing said when the user's own file is used


def test_an_unknown_name_suggests_and_lists_the_users_then_the_shipped_names(empty_dir):
    (empty_dir / "experiments").mkdir()
    (empty_dir / "experiments" / "mine.yaml").write_text("base: ../configs/x.yaml\n")
    with pytest.raises(MLPLabError) as info:
        load_study("dropuot")
    shipped = ", ".join(Path(n).stem for n in SHIPPED["experiments"])
    assert str(info.value) == (
        f"experiments/dropuot.yaml: no study named 'dropuot' (did you mean 'dropout'?); known: mine; shipped: {shipped}"
    )
    with pytest.raises(MLPLabError, match=r"no config named 'basline' \(did you mean 'baseline'\?\); no config files"):
        load_config("basline")


def test_the_cli_says_which_file_a_name_used_on_stderr_only(empty_dir):
    runner = CliRunner()
    shipped = runner.invoke(app, ["validate", "baseline"])
    assert shipped.exit_code == 0, shipped.output
    assert shipped.stderr.splitlines() == [notice("config", "configs", "baseline")]
    assert yaml.safe_load(shipped.stdout)["name"] == "baseline"
    assert logging.getLogger("mlp_lab").handlers == []  # the command's handler is gone afterwards
    write_copy(empty_dir)
    own = runner.invoke(app, ["validate", "baseline"])
    assert own.exit_code == 0 and own.stderr == ""


def test_run_takes_a_name_and_records_the_shipped_file(empty_dir, tmp_path):
    data = write_idx_dataset(tmp_path / "idx")
    result = CliRunner().invoke(
        app,
        [
            "run",
            "baseline",
            "--data-dir",
            str(data),
            "--set",
            "train.epochs=1",
            "--set",
            "model.hidden_sizes=[32]",
            "--set",
            "output.tensorboard=false",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [notice("config", "configs", "baseline")]
    assert "done: runs/baseline" in result.stdout
    summary = json.loads((empty_dir / "runs" / "baseline" / "summary.json").read_text())
    assert summary["epochs_run"] == 1


def test_init_writes_the_copy_refuses_to_overwrite_and_force_replaces(empty_dir):
    runner = CliRunner()
    first = runner.invoke(app, ["init", "proj"])
    assert first.exit_code == 0, first.output
    counts = {folder: len(names) for folder, names in SHIPPED.items()}
    assert first.stdout.splitlines() == [f"wrote proj/{folder}/ ({counts[folder]} files)" for folder in counts]
    for folder, names in SHIPPED.items():
        assert sorted(p.name for p in (empty_dir / "proj" / folder).iterdir()) == names
        assert (empty_dir / "proj" / folder / names[0]).read_bytes() == (REPO / folder / names[0]).read_bytes()

    edited = empty_dir / "proj" / "configs" / "baseline.yaml"
    edited.write_text("name: mine\n")
    (empty_dir / "proj" / "configs" / "mine.yaml").write_text("name: other\n")
    again = runner.invoke(app, ["init", "proj"])
    assert again.exit_code == 2 and again.stdout == ""
    [line] = again.stderr.splitlines()
    assert line.startswith("error: proj: would overwrite proj/configs/baseline.yaml, ") and "--force" in line
    assert edited.read_text() == "name: mine\n"  # refused before writing anything

    forced = runner.invoke(app, ["init", "proj", "--force"])
    assert forced.exit_code == 0 and len(forced.stdout.splitlines()) == 3
    assert edited.read_bytes() == (REPO / "configs" / "baseline.yaml").read_bytes()
    assert (empty_dir / "proj" / "configs" / "mine.yaml").read_text() == "name: other\n"  # other files left alone

    (empty_dir / "afile").write_text("")
    into_file = runner.invoke(app, ["init", "afile"])
    assert into_file.exit_code == 2 and into_file.stderr == "error: afile: is a file, expected a directory\n"


def test_init_leaves_nothing_behind_when_it_cannot_finish(empty_dir, monkeypatch):
    real = Path.write_bytes
    calls = []

    def full_disk(self, data):
        calls.append(self)
        if len(calls) == 8:  # a few files in: the disk fills
            raise OSError(28, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    (empty_dir / "proj").mkdir()
    with pytest.raises(OSError):
        write_copy(empty_dir / "proj")
    assert list((empty_dir / "proj").iterdir()) == []  # the folder the user had stays, empty as it was


def test_list_shows_the_shipped_files_the_users_folder_does_not_shadow(empty_dir):
    configs = list_configs("configs")
    assert [e["name"] for e in configs] == [Path(n).stem for n in SHIPPED["configs"]]
    assert {e["shipped"] for e in configs} == {True} and {e["state"] for e in configs} == {"new"}
    (empty_dir / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "dropout.yaml", empty_dir / "experiments" / "dropout.yaml")
    (empty_dir / "configs").mkdir()
    shutil.copy(REPO / "configs" / "baseline.yaml", empty_dir / "configs" / "baseline.yaml")
    studies = list_studies("experiments")
    assert studies[0] == {**studies[0], "name": "dropout", "shipped": False, "path": "experiments/dropout.yaml"}
    assert [e["name"] for e in studies[1:]] == [Path(n).stem for n in SHIPPED["experiments"] if n != "dropout.yaml"]
    assert {e["shipped"] for e in studies[1:]} == {True}


def test_the_version_has_one_source():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mlp_lab.__version__"}
    assert (REPO / "LICENSE").read_text().splitlines()[2] == "Copyright (c) 2026 the mlp-lab authors"


# --- the built wheel, installed -------------------------------------------------------------


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel built from a copy of the source tree (the build writes egg-info beside its input)."""
    source = tmp_path / "source"
    anywhere = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*cache")

    def ignore(folder: str, names: list[str]) -> set[str]:
        # A checkout's own runs/ and data/ stay out; mlp_lab/runs and mlp_lab/data are packages.
        top = {"runs", "data"} & set(names) if Path(folder) == REPO else set()
        return set(anywhere(folder, names)) | top

    shutil.copytree(REPO, source, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)]
    # The build backend already here builds offline; an older one is swapped for pyproject's in isolation.
    if int(importlib.metadata.version("setuptools").split(".")[0]) >= 77:
        command.insert(4, "--no-build-isolation")
    subprocess.run(command, check=True, capture_output=True, text=True)
    [wheel] = (tmp_path / "dist").glob("mlp_lab-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel and nothing else of mlp-lab's. Its dependencies
    (torch and the rest) are this interpreter's, seen through a folder of links that leaves out
    mlp-lab's own installation (an editable one would otherwise be found first)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    deps = tmp_path / "deps"
    deps.mkdir()
    for site in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in Path(site).iterdir():
            own = entry.name.startswith(("mlp_lab", "__editable__", "_distutils_hack")) or entry.suffix == ".pth"
            if not own and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(f"{deps}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
        text=True,
    )
    return venv


@pytest.mark.slow
def test_the_wheel_ships_the_files_and_runs_in_an_empty_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"mlp_lab-{__version__}.dist-info/METADATA").decode()
    for folder, files in SHIPPED.items():
        assert {n for n in names if n.startswith(f"mlp_lab/files/{folder}/")} == {
            f"mlp_lab/files/{folder}/{f}" for f in files
        }
    source_modules = {p.relative_to(REPO).as_posix() for p in (REPO / "mlp_lab").rglob("*.py")}
    assert source_modules <= names, source_modules - names  # the spelt-out package list misses none
    assert "mlp_lab/py.typed" in names and f"mlp_lab-{__version__}.dist-info/licenses/LICENSE" in names
    assert f"\nVersion: {__version__}\n" in metadata and "\nLicense-Expression: MIT\n" in metadata
    assert "Project-URL: Homepage, https://github.com/mlp-lab/mlp-lab\n" in metadata

    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    data = write_idx_dataset(tmp_path / "idx")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLP_LAB_DATA")}

    def mlp_lab(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [venv / "bin" / "mlp-lab", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import mlp_lab.core.shipped as s; print(s.shipped_dir('configs'))"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = Path(where)
    assert installed.is_relative_to(venv) and installed.parts[-3:] == ("mlp_lab", "files", "configs")

    run = mlp_lab(
        "run", "baseline", "--set", "train.epochs=1", "--set", "model.hidden_sizes=[32]", "--data-dir", str(data)
    )
    assert run.stderr.splitlines() == [
        f"using the shipped config {installed / 'baseline.yaml'} (no configs/baseline.yaml here; "
        f"mlp-lab init DIR writes an editable copy)"
    ]
    assert "done: runs/baseline" in run.stdout and (work / "runs" / "baseline" / "summary.json").is_file()

    compare = mlp_lab("compare", "dropout", "--seeds", "0", "--set", "train.epochs=1", "--data-dir", str(data))
    assert compare.stderr.startswith(f"using the shipped study {installed.parent / 'experiments' / 'dropout.yaml'} ")
    assert "report: runs/dropout/report.md" in compare.stdout
    assert len(json.loads((work / "runs" / "dropout" / "report.json").read_text())["arms"]) == 3

    init = mlp_lab("init", "proj")
    assert init.stdout.splitlines() == [
        f"wrote proj/{folder}/ ({len(files)} files)" for folder, files in SHIPPED.items()
    ]
    assert (work / "proj" / "experiments" / "dropout.yaml").read_bytes() == (
        REPO / "experiments" / "dropout.yaml"
    ).read_bytes()
