"""The commands the README and the guides show, run as a user would type them, so they stay true.

Each ```bash block of README.md and docs/guide/*.md runs in a fresh folder holding an editable
copy of the shipped files (`mlp-lab init .`), shortened there and not on the command line:
every config trains 1 epoch, every study has seed 0 (and 1 epoch where its overrides set
epochs), every search 2 trials; the datasets are small synthetic copies in the real formats
(found through $MLP_LAB_DATA, as a user's own files are); a page that runs `examples/` gets a copy
of the repository's examples folder, shortened alike, and its `python examples/...` scripts run
with this interpreter. The commands themselves run verbatim,
in order, through the CLI (a --trials N given there becomes 2); each must exit 0. A few are not run, each for a reason in SKIP (a
server that runs until stopped, a cluster, minutes of benchmarking), and files a command needs
that no earlier command of its block makes (`runs/mnist`, `seven.png`) are made first (PREPARE).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_cifar_dataset, write_idx_dataset
from typer.testing import CliRunner

from mlp_lab.cli import app

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs" / "guide").glob("*.md"))]
runner = CliRunner()

# Commands not run, by a pattern of the command line, and why.
SKIP = {
    r"^mlp-lab (app|ui)\b": "serves until stopped: tests/app/test_app.py and tests/test_services.py start and stop it",
    r"^mlp-lab bench\b": "measures epoch speed for minutes on the real dataset (docs/guide/analysis.md's figures)",
    r"^mlp-lab suite\s*(#|$)": "every shipped study: 'suite ladder mnist_linear_vs_mlp' runs the same verb on two",
    r"--address auto": "needs a running Ray cluster (docs/guide/cluster.md); tests/execution/test_executors_ray.py starts one",
    r"--backend ray": "starts a local Ray instance: tests/execution/test_executors_ray.py runs --backend ray",
    r"^(make|pip|\.|tensorboard|ray|mkdir|echo|export)(\s|$)": "not mlp-lab: an install, a shell or another tool's command",
    r"^(docker|podman)\s": "builds or runs the container image: tests/test_container.py builds it and runs these verbs in it",
}
# Text of a command line replaced before it runs: the user's own paths, here made up, and a
# trial count given on the command line (it overrides the search file's shortened one).
PLACEHOLDERS = {"~/mnist": "{data}/mnist"}
REWRITES = {r"--trials \d+": "--trials 2"}
EXTRAS = {"--track": "mlflow", "track": "mlflow", "register": "mlflow", "models": "mlflow", "search": "optuna"}


def _image(path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 12:16] = 255  # a stroke, like a hand-drawn one
    Image.fromarray(pixels).save(path)


# What a command needs that no earlier command of its block makes: made first, by the CLI.
PREPARE: dict[str, Callable[[Path], None] | list[str]] = {
    "runs/mnist_robust": ["run", "configs/mnist_robust.yaml"],
    "runs/mnist": ["run", "configs/mnist.yaml"],
    "runs/baseline": ["run", "configs/baseline.yaml"],
    "seven.png": _image,
    "shoe.png": _image,
}


def command_lines(text: str) -> list[list[str]]:
    """The shell blocks of a markdown page, each as its command lines (comments and line
    continuations removed; `a && b` is two lines)."""
    blocks = []
    for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
        lines = []
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines += [part.strip() for part in line.split("&&")]
        blocks.append(lines)
    return blocks


BLOCKS = [(page, i, lines) for page in PAGES for i, lines in enumerate(command_lines(page.read_text())) if lines]


def skip_reason(line: str) -> str | None:
    return next((reason for pattern, reason in SKIP.items() if re.search(pattern, line)), None)


def _shorten(project: Path) -> None:
    """Every config 1 epoch, every study seed 0 (1 epoch where it sets epochs), every search 2 trials."""
    for path in (project / "configs").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw.setdefault("train", {})["epochs"] = 1
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for path in (project / "experiments").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw["seeds"] = [0]
        if "train.epochs" in (raw.get("overrides") or {}):
            raw["overrides"]["train.epochs"] = 1
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for path in (project / "searches").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw["trials"] = 2
        path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _copy_examples(project: Path) -> None:
    """The repository's examples/ (without data its scripts wrote), each config 1 epoch and each
    study seed 0, as `_shorten` does for the shipped files."""
    shutil.copytree(REPO / "examples", project / "examples", ignore=shutil.ignore_patterns("*.csv", "digits"))
    for path in (project / "examples").glob("*/*.yaml"):
        raw = yaml.safe_load(path.read_text())
        if "arms" in raw:
            raw["seeds"] = [0]
            if "train.epochs" in (raw.get("overrides") or {}):
                raw["overrides"]["train.epochs"] = 1
        else:
            raw.setdefault("train", {})["epochs"] = 1
        path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _invoke(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"mlp-lab {shlex.join(args)} exited {result.exit_code}:\n{result.output[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("page, index, lines", BLOCKS, ids=[f"{p.relative_to(REPO)}:{i}" for p, i, _ in BLOCKS])
def test_a_documented_block_runs(page, index, lines, tmp_path, monkeypatch):
    data = tmp_path / "datasets"
    write_idx_dataset(data / "fashion_mnist", n_train=300, n_test=100)
    write_idx_dataset(data / "mnist", n_train=300, n_test=100, seed=1)
    write_cifar_dataset(data, per_batch=30, n_test=50)
    monkeypatch.setenv("MLP_LAB_DATA", str(data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    _invoke(["init", "."])
    _shorten(tmp_path)
    if any("examples/" in line for line in lines):
        _copy_examples(tmp_path)
    for line in lines:
        if skip_reason(line):
            continue
        for pattern, replacement in REWRITES.items():
            line = re.sub(pattern, replacement, line)
        words = shlex.split(line)
        if words[0] == "cd":
            monkeypatch.chdir(words[1])
            continue
        if words[0] == "python" and words[1].startswith("examples/"):
            # The examples' own scripts (writing real data as CSV or PNG files): run as typed.
            subprocess.run([sys.executable, *words[1:]], check=True, capture_output=True)
            continue
        if words[0] == "cat":
            assert Path(words[1]).is_file(), f"{line}: no such file"
            continue
        assert words[0] == "mlp-lab", f"{line}: neither mlp-lab nor a skipped command; add it to SKIP with a reason"
        for word in words[1:]:
            if any(word == key or word.startswith(key + "/") for key in EXTRAS):
                pytest.importorskip(EXTRAS[word.split("/")[0]])
        args = [PLACEHOLDERS.get(w, w).replace("{data}", str(data)) for w in words[1:]]
        for needed, make in PREPARE.items():
            if needed in args and not Path(needed).exists():
                make(Path(needed)) if callable(make) else _invoke(make)
        _invoke(args)


def test_every_skip_rule_skips_a_documented_command_and_commands_are_found():
    """A rule that matches nothing is stale; a page whose blocks vanished would test nothing."""
    every = [line for _, _, lines in BLOCKS for line in lines]
    assert sum(line.startswith("mlp-lab") for line in every) >= 60, len(every)
    for pattern, reason in SKIP.items():
        assert any(re.search(pattern, line) for line in every), (pattern, reason)
    run = [line for line in every if not skip_reason(line)]
    assert any(line.startswith("mlp-lab compare") for line in run) and any(" --track" in line for line in run)
