"""The error matrix: every verb against every kind of bad input, and the faults of the machine.

Each row is a case a user could make: the command line, the files it needs, the exit code, and
fragments of the one `error:` line it must print (or the several lines, when a file has several
problems: all are reported at once). Every case also checks that there is no traceback, that
each line is short (echoed values are cut), that no temporary file is left, and that bad input
wrote nothing under the output directory. Most cases fail before torch is imported; one
subprocess checks that for them all.

docs/errors.md holds the table with what each case prints; `test_docs_table_is_true` keeps it
so. After changing a message: MLP_LAB_WRITE_DOCS=1 pytest tests/test_errors.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx_dataset
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import validate_config
from mlp_lab.runs import rundir
from mlp_lab.training.context import RunContext

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "errors.md"
WRITE_DOCS = os.environ.get("MLP_LAB_WRITE_DOCS") == "1"
MAX_LINE = 400  # characters: an error line is read, not scrolled

GOOD = "name: ok\ntrain:\n  epochs: 2\n  device: cpu\n"
# A tiny config over the synthetic IDX files in ./idx (or wherever --data-dir points).
TINY = (
    "name: tiny\ndata: {dataset: mnist, root: data, download: false, val_fraction: 0.2}\n"
    "model: {hidden_sizes: [16]}\ntrain: {epochs: 1, batch_size: 64, device: cpu}\n"
    "output: {dir: runs, tensorboard: false}\n"
)
EXP = "base: ../base.yaml\nfactor: model.dropout\nreference: a\nseeds: [0]\narms:\n  a: {}\n  b: {model.dropout: 0.1}\n"
SEARCH = (
    "base: ../base.yaml\nsampler: random\ntrials: 2\n"
    "params:\n  train.optimizer.lr: {type: float, low: 0.0001, high: 0.1, log: true}\n"
)


@dataclass
class Case:
    """One bad input or fault: files to make (relative to the temp dir), the CLI args, the exit
    code and the fragments each `error:` line must hold ({tmp}, {run}, {diverged} are filled in)."""

    kind: str  # config, --set, study, search, cli, image, checkpoint, dataset, env, output
    name: str
    args: list[str]
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    code: int = 2
    lines: int = 1  # error lines: a file with several problems reports them all
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdout: str | None = None  # a fragment that must be on stdout too (predict's good image)
    torch_free: bool = False  # refused before torch is imported

    @property
    def key(self) -> str:
        return f"{self.kind}: {self.name}"

    @property
    def verb(self) -> str:
        return next((a for a in self.args if not a.startswith("-")), "")


def _copy_run(source: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs[source], tmp / "copy")

    return setup


def _cut(relative: str, keep: float = 0.5) -> Callable[[Path, dict[str, Path]], None]:
    """Copy the finished run and cut one of its files short (a crash mid-copy, a torn download)."""

    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs["run"], tmp / "copy")
        path = tmp / "copy" / relative
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])

    return setup


def _replace(relative: str, text: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs["run"], tmp / "copy")
        (tmp / "copy" / relative).write_text(text)

    return setup


def _remove(relative: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs["run"], tmp / "copy")
        (tmp / "copy" / relative).unlink()

    return setup


def _dataset(change: Callable[[Path], None], compress: bool = True) -> Callable[[Path, dict[str, Path]], None]:
    """Synthetic IDX files in ./bad with one of them damaged by `change`."""

    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        write_idx_dataset(tmp / "bad", n_train=100, n_test=50, compress=compress)
        change(tmp / "bad")

    return setup


def _truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        path = directory / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])

    return change


def _overwrite(name: str, data: bytes) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        (directory / name).write_bytes(data)

    return change


def _images(tmp: Path, runs: dict[str, Path]) -> None:
    from PIL import Image

    (tmp / "imgs").mkdir()
    good = np.full((28, 28), 200, dtype=np.uint8)
    good[6:22, 12:16] = 20  # a dark stroke: something to classify
    Image.fromarray(good).save(tmp / "imgs" / "good.png")
    (tmp / "notes.txt").write_text("just text")


def _dangling(name: str) -> Callable[[Path, dict[str, Path]], None]:
    """`name` as a symbolic link to a file that is not there (moved, or on an unmounted disk)."""

    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).symlink_to(tmp / "gone.yaml")

    return setup


def _run_with_dangling(relative: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs["run"], tmp / "copy")
        (tmp / "copy" / relative).unlink()
        (tmp / "copy" / relative).symlink_to(tmp / "copy" / "gone.pt")

    return setup


# Ten lines that expand to 10**9 strings: PyYAML's safe_load builds them all (a hang, then out of memory).
ALIAS_BOMB = (
    "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 9))
    + "name: *a8\n"
)


def _hostile_images(tmp: Path, runs: dict[str, Path]) -> None:
    """Pictures a disk, a camera or another person can produce: a decompression bomb (16000 x
    16000 in a few hundred KB), a blank page, a cut-off PNG, a link to a deleted file."""
    from PIL import Image

    _images(tmp, runs)
    Image.new("1", (16000, 16000)).save(tmp / "bomb.png")
    Image.new("RGB", (300, 300), "white").save(tmp / "white.png")
    whole = (tmp / "imgs" / "good.png").read_bytes()
    (tmp / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp / "gone.png").symlink_to("deleted.png")


EXP_FILES = {"base.yaml": GOOD, "experiments/x.yaml": EXP}
SEARCH_FILES = {"base.yaml": GOOD, "searches/s.yaml": SEARCH}
BIG = "[1000000000000]"

CASES = [
    # -- config files -------------------------------------------------------------------------
    Case(
        "config",
        "unknown top-level key",
        ["validate", "c.yaml"],
        ["c.yaml", "trian", "did you mean 'train'"],
        {"c.yaml": "trian: {}\n"},
    ),
    Case(
        "config",
        "unknown nested key",
        ["run", "c.yaml"],
        ["c.yaml", "model.hiden_sizes", "did you mean 'model.hidden_sizes'"],
        {"c.yaml": "model:\n  hiden_sizes: [3]\n"},
    ),
    Case(
        "config",
        "unknown key in a CNN's conv blocks",
        ["validate", "c.yaml"],
        ["c.yaml", "model.conv.chanels", "did you mean 'model.conv.channels'"],
        {"c.yaml": "model:\n  kind: cnn\n  conv: {chanels: [8]}\n"},
    ),
    Case(
        "config",
        "unknown model kind",
        ["validate", "c.yaml"],
        ["c.yaml", "model.kind", "'mlp' or 'cnn' or 'user'"],
        {"c.yaml": "model:\n  kind: rnn\n"},
    ),
    Case(
        "your model",
        "target file missing",
        ["validate", "c.yaml"],
        ["c.yaml", "model.target", "nope.py: no such file (the target is relative to the config that names it)"],
        {"c.yaml": "model: {target: nope.py:Net}\n"},
    ),
    Case(
        "your model",
        "name not in the file",
        ["validate", "c.yaml"],
        ["model.target", "net.py has no 'Nett'; it has: Net"],
        {
            "c.yaml": "model: {target: net.py:Nett}\n",
            "net.py": "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features, num_classes, width=8):\n        super().__init__()\n        self.fc = torch.nn.Linear(in_features, 3)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n",
        },
    ),
    Case(
        "your model",
        "an argument the signature does not take",
        ["validate", "c.yaml"],
        ["model.args.widht", "net.py:Net takes no argument 'widht'; did you mean 'width'?"],
        {
            "c.yaml": "model: {target: net.py:Net, args: {widht: 4}}\n",
            "net.py": "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features, num_classes, width=8):\n        super().__init__()\n        self.fc = torch.nn.Linear(in_features, 3)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n",
        },
    ),
    Case(
        "your model",
        "output not (batch, classes)",
        ["validate", "c.yaml"],
        ["model.target", "net.py:Net maps a batch of shape (2, 784) to (2, 3)", "(batch, num_classes) = (2, 10)"],
        {
            "c.yaml": "model: {target: net.py:Net}\n",
            "net.py": "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features, num_classes, width=8):\n        super().__init__()\n        self.fc = torch.nn.Linear(in_features, 3)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n",
        },
    ),
    Case(
        "your model",
        "a built-in key beside the target",
        ["validate", "c.yaml"],
        ["c.yaml", "model: unknown key 'hidden_sizes'", "go under args (model.args.hidden_sizes)"],
        {
            "c.yaml": "model: {target: net.py:Net, hidden_sizes: [8]}\n",
            "net.py": "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features, num_classes, width=8):\n        super().__init__()\n        self.fc = torch.nn.Linear(in_features, 3)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n",
        },
    ),
    Case(
        "your data",
        "data file missing",
        ["validate", "c.yaml"],
        ["c.yaml", "data.source.path", "t.csv: no such file or folder"],
        {"c.yaml": "data: {source: {kind: csv, path: t.csv}}\n"},
    ),
    Case(
        "your data",
        "unknown source kind",
        ["validate", "c.yaml"],
        ["c.yaml", "data.source: kind 'parquet' is not one of 'folder', 'npz', 'csv', 'python', 'torchvision'"],
        {"c.yaml": "data: {source: {kind: parquet, path: t.csv}}\n", "t.csv": "a,label\n1,0\n"},
    ),
    Case(
        "your data",
        "a dataset and a source",
        ["validate", "c.yaml"],
        ["c.yaml", "data: give data.dataset (a registered dataset) or data.source (your own data), not both"],
        {"c.yaml": "data: {dataset: mnist, source: {kind: csv, path: t.csv}}\n", "t.csv": "a,label\n1,0\n"},
    ),
    Case(
        "your data",
        "CSV label column missing",
        ["data", "c.yaml"],
        ["t.csv", "no column 'diagnosis' (data.source.label)", "the columns: radius, target"],
        {
            "c.yaml": "data: {source: {kind: csv, path: t.csv, label: diagnosis}}\n",
            "t.csv": "radius,target\n1.0,0\n2.0,1\n",
        },
    ),
    Case(
        "your data",
        "a class folder with no pictures",
        ["data", "c.yaml"],
        ["imgs/cat", "a class folder with no images"],
        {
            "c.yaml": "data: {source: {kind: folder, path: imgs}}\n",
            "imgs/cat/notes.txt": "no pictures here",
            "imgs/dog/0.pgm": b"P5 1 1 255\n\x80",
        },
    ),
    Case(
        "config",
        "wrong type",
        ["run", "c.yaml"],
        ["c.yaml", "train.epochs", "'many'"],
        {"c.yaml": "train:\n  epochs: many\n"},
    ),
    Case(
        "config",
        "negative learning rate",
        ["run", "c.yaml"],
        ["c.yaml", "train.optimizer.lr", "greater than 0"],
        {"c.yaml": "train:\n  optimizer: {lr: -0.1}\n"},
    ),
    Case(
        "config",
        "zero epochs",
        ["run", "c.yaml"],
        ["c.yaml", "train.epochs", "greater than 0"],
        {"c.yaml": "train:\n  epochs: 0\n"},
    ),
    Case(
        "config",
        "dropout 1.0",
        ["run", "c.yaml"],
        ["c.yaml", "model.dropout", "less than 1"],
        {"c.yaml": "model:\n  dropout: 1.0\n"},
    ),
    Case(
        "config",
        "hidden size 0",
        ["run", "c.yaml"],
        ["c.yaml", "model.hidden_sizes[1]"],
        {"c.yaml": "model:\n  hidden_sizes: [8, 0]\n"},
    ),
    Case(
        "config",
        "augmentation out of range",
        ["validate", "c.yaml"],
        ["c.yaml", "data.augment.scale", "less than 1"],
        {"c.yaml": "data:\n  augment:\n    scale: 1.5\n"},
    ),
    Case(
        "config",
        "handwriting score on a fashion run",
        ["validate", "c.yaml"],
        ["c.yaml", "output.handwriting", "needs data.dataset 'mnist'"],
        {"c.yaml": "output:\n  handwriting: true\n"},
    ),
    Case(
        "config",
        "three problems at once",
        ["validate", "c.yaml", "--set", "train.optimizer.lr=0"],
        ["c.yaml"],
        {"c.yaml": "model:\n  dropout: 1.0\ntrain:\n  epochs: 0\n"},
        lines=3,
    ),
    Case("config", "empty file", ["run", "c.yaml"], ["c.yaml", "file is empty"], {"c.yaml": ""}),
    Case(
        "config",
        "YAML syntax error",
        ["run", "c.yaml"],
        ["c.yaml", "line 3", "YAML syntax error"],
        {"c.yaml": "name: x\nmodel:\n  hidden_sizes: [1, 2\n"},
    ),
    Case(
        "config",
        "a key written twice",
        ["validate", "c.yaml"],
        ["c.yaml", "line 2", "'name' is written twice", "line 1"],
        {"c.yaml": "name: a\nname: b\n"},
    ),
    Case(
        "config",
        "a tab in the indentation",
        ["run", "c.yaml"],
        ["c.yaml", "line 3", "tab in the indentation"],
        {"c.yaml": "name: a\nmodel:\n\thidden_sizes: [8]\n"},
    ),
    Case(
        "config", "not UTF-8", ["validate", "c.yaml"], ["c.yaml", "not UTF-8", "0xff"], {"c.yaml": b"name: \xff\xfe\n"}
    ),
    Case(
        "config",
        "top level is a list",
        ["validate", "c.yaml"],
        ["c.yaml", "expected a mapping"],
        {"c.yaml": "- 1\n- 2\n"},
    ),
    Case(
        "config",
        "YAML alias bomb",
        ["validate", "c.yaml"],
        ["c.yaml", "line 2", "alias *a0", "no anchors or aliases"],
        {"c.yaml": ALIAS_BOMB},
    ),
    Case(
        "config",
        "nested 100 levels deep",
        ["validate", "c.yaml"],
        ["c.yaml", "nested more than 64 levels"],
        {"c.yaml": "name: " + "[" * 100 + "]" * 100 + "\n"},
    ),
    Case(
        "config",
        "a file over 1 MiB",
        ["validate", "c.yaml"],
        ["c.yaml", "larger than 1 MiB"],
        {"c.yaml": "name: x\n" + "#" * (1 << 20) + "\n"},
    ),
    Case(
        "config",
        "a dangling symbolic link",
        ["validate", "c.yaml"],
        ["c.yaml", "symbolic link to a missing file"],
        setup=_dangling("c.yaml"),
    ),
    Case(
        "config",
        ".nan for a float",
        ["validate", "c.yaml"],
        ["c.yaml", "train.l2", "finite number"],
        {"c.yaml": "train:\n  l2: .nan\n"},
    ),
    Case("config", "missing file", ["run", "nope.yaml"], ["nope.yaml", "file not found"]),
    Case("config", "directory as file", ["validate", "."], ["is a directory"]),
    Case(
        "config",
        "unknown dataset",
        ["run", "c.yaml"],
        ["c.yaml", "data.dataset", "'imagenet'"],
        {"c.yaml": "data:\n  dataset: imagenet\n"},
    ),
    Case(
        "config",
        "unknown optimizer",
        ["run", "c.yaml"],
        ["c.yaml", "train.optimizer.name", "'rmsprop'"],
        {"c.yaml": "train:\n  optimizer: {name: rmsprop}\n"},
    ),
    Case(
        "config",
        "unknown scheduler",
        ["run", "c.yaml"],
        ["c.yaml", "train.scheduler.name", "'onecycle'"],
        {"c.yaml": "train:\n  scheduler: {name: onecycle}\n"},
    ),
    Case(
        "config",
        "unknown activation",
        ["summary", "c.yaml"],
        ["c.yaml", "model.activation", "'swish'"],
        {"c.yaml": "model:\n  activation: swish\n"},
    ),
    Case(
        "config",
        "val_fraction out of range",
        ["run", "c.yaml"],
        ["c.yaml", "data.val_fraction"],
        {"c.yaml": "data:\n  val_fraction: 1.5\n"},
    ),
    Case(
        "config",
        "bad early-stopping monitor",
        ["run", "c.yaml"],
        ["c.yaml", "train.early_stopping.monitor"],
        {"c.yaml": "train:\n  early_stopping: {monitor: val/f1}\n"},
    ),
    Case(
        "config",
        "warmup longer than training",
        ["run", "c.yaml"],
        ["c.yaml", "train.scheduler.warmup_epochs"],
        {"c.yaml": "train:\n  epochs: 2\n  scheduler: {name: cosine, warmup_epochs: 5}\n"},
    ),
    Case(
        "config",
        "nesterov without SGD",
        ["validate", "c.yaml"],
        ["c.yaml", "train.optimizer.nesterov"],
        {"c.yaml": "train:\n  optimizer: {nesterov: true}\n"},
    ),
    Case(
        "config",
        "run name escaping the output dir",
        ["run", "c.yaml"],
        ["c.yaml", "name", "'../evil'"],
        {"c.yaml": "name: ../evil\n"},
    ),
    Case(
        "config",
        "model too large for memory (summary)",
        ["summary", "c.yaml", "--set", f"model.hidden_sizes={BIG}"],
        ["--set model.hidden_sizes", "795,000,000,000,010 parameters", "GiB", "this machine has"],
        {"c.yaml": GOOD},
    ),
    Case(
        "config",
        "CNN blocks that leave no pixels",
        ["run", "c.yaml"],
        ["c.yaml", "model.conv", "leaves no pixels"],
        {"c.yaml": "model:\n  kind: cnn\n  conv: {channels: [4, 4, 4, 4, 4], padding: 0}\n"},
    ),
    Case(
        "config",
        "model too large for memory (run)",
        ["run", "c.yaml"],
        ["c.yaml", "model.hidden_sizes", "parameters need"],
        {"c.yaml": "model:\n  hidden_sizes: [100000, 100000, 100000]\n"},
    ),
    Case(
        "config",
        "bench with a bad config",
        ["bench", "c.yaml"],
        ["c.yaml", "train.batch_size"],
        {"c.yaml": "train:\n  batch_size: 0\n"},
    ),
    Case(
        "config",
        "bench a CNN config",
        ["bench", "c.yaml"],
        ["c.yaml", "model.kind", "'cnn' is not benchmarked yet"],
        {"c.yaml": "model:\n  kind: cnn\n"},
    ),
    # -- --set --------------------------------------------------------------------------------
    Case(
        "--set",
        ".inf for a float",
        ["validate", "c.yaml", "--set", "train.l2=.inf"],
        ["--set train.l2=.inf", "train.l2", "finite number"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "malformed --set",
        ["run", "c.yaml", "--set", "train.epochs"],
        ["--set train.epochs", "KEY=VALUE"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set value that is not YAML",
        ["run", "c.yaml", "--set", "model.hidden_sizes=[1,"],
        ["--set", "not valid YAML"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set into a scalar",
        ["run", "c.yaml", "--set", "seed.x=1"],
        ["--set seed.x=1", "seed"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set a seed numpy cannot take",
        ["validate", "c.yaml", "--set", "seed=4294967296"],
        ["--set seed=4294967296", "seed", "4294967295"],
        {"c.yaml": GOOD},
        torch_free=True,
    ),
    Case(
        "--set",
        "--set to an invalid value",
        ["run", "c.yaml", "--set", "train.batch_size=-3"],
        ["--set train.batch_size=-3", "train.batch_size"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set unknown key",
        ["validate", "c.yaml", "--set", "model.dropuot=0.1"],
        ["--set model.dropuot=0.1", "did you mean 'model.dropout'"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set a 100,000-character value",
        ["validate", "c.yaml", "--set", "name=" + "x" * 100_000],
        ["--set name=xxx", "(100005 characters)", "at most 100 characters"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set on compare, invalid for every arm",
        ["compare", "experiments/x.yaml", "--set", "train.epochs=0"],
        ["--set train.epochs=0", "train.epochs", "greater than 0"],
        EXP_FILES,
    ),
    Case(
        "--set",
        "--set on compare, the study's factor",
        ["compare", "experiments/x.yaml", "--set", "model.dropout=0.3"],
        ["--set model.dropout=0.3", "is this study's factor"],
        EXP_FILES,
    ),
    Case(
        "--set",
        "--set on compare, malformed",
        ["compare", "experiments/x.yaml", "--set", "epochs"],
        ["--set epochs", "KEY=VALUE"],
        EXP_FILES,
    ),
    Case(
        "--set",
        "--set on suite, invalid",
        ["suite", "x", "--set", "train.batch_size=0"],
        ["--set train.batch_size=0", "train.batch_size"],
        EXP_FILES,
    ),
    Case(
        "--set",
        "--set on search, a searched key",
        ["search", "searches/s.yaml", "--set", "train.optimizer.lr=0.1"],
        ["--set train.optimizer.lr=0.1", "is searched", "params.train.optimizer.lr"],
        SEARCH_FILES,
    ),
    Case(
        "--set",
        "--set on search, invalid",
        ["search", "searches/s.yaml", "--set", "train.epochs=-1"],
        ["--set train.epochs=-1", "train.epochs"],
        SEARCH_FILES,
    ),
    # -- experiment files ---------------------------------------------------------------------
    Case(
        "study",
        ".nan in an arm",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "arms.b", "model.dropout", "finite number"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("{model.dropout: 0.1}", "{model.dropout: .nan}")},
    ),
    Case(
        "study",
        "an alias in a study file",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "line 8", "alias *a"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("a: {}", "a: &a {}") + "  c: *a\n"},
    ),
    Case("study", "unknown study", ["compare", "nope"], ["no study named 'nope'"]),
    Case(
        "study",
        "arm outside its factor",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "arms.b", "'train.epochs'", "outside the factor"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("{model.dropout: 0.1}", "{train.epochs: 3}")},
    ),
    Case(
        "study",
        "reference not an arm",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "reference", "'z'"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("reference: a", "reference: z")},
    ),
    Case(
        "study",
        "missing base",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "base", "file not found"],
        {"experiments/x.yaml": EXP.replace("../base.yaml", "../gone.yaml")},
    ),
    Case(
        "study",
        "overrides with a bad dotted key",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "overrides.name.x", "name: is a str, so it has no key 'x'"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP + "overrides: {name.x: 3}\n"},
    ),
    Case(
        "study",
        "arm setting into a scalar",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "arms.b.model.dropout.p", "is a float"],
        {
            "base.yaml": GOOD,
            "experiments/x.yaml": EXP.replace("factor: model.dropout", "factor: model").replace(
                "{model.dropout: 0.1}", "{model.dropout: 0.1, model.dropout.p: 2}"
            ),
        },
    ),
    Case(
        "study",
        "typo'd key: did-you-mean",
        ["report", "experiments/x.yaml"],
        ["x.yaml", "refrence", "did you mean 'reference'"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("reference: a", "refrence: a")},
        lines=2,
    ),
    Case(
        "study",
        "one arm and a missing base: both reported",
        ["compare", "experiments/x.yaml"],
        ["x.yaml"],
        {"experiments/x.yaml": "base: ../gone.yaml\nfactor: model.dropout\nreference: a\nseeds: [0]\narms:\n  a: {}\n"},
        lines=2,
    ),
    Case(
        "study",
        "base is a directory",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "base", "is a directory"],
        {"base.yaml/.keep": "", "experiments/x.yaml": EXP},
    ),
    Case(
        "study",
        "study file is a list",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "expected a mapping"],
        {"experiments/x.yaml": "- a\n- b\n"},
    ),
    Case(
        "study",
        "a key written twice",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "'seeds' is written twice"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP + "seeds: [1]\n"},
    ),
    Case(
        "study",
        "no seeds",
        ["compare", "experiments/x.yaml"],
        ["x.yaml", "seeds"],
        {"base.yaml": GOOD, "experiments/x.yaml": EXP.replace("seeds: [0]", "seeds: []")},
    ),
    Case("study", "bad --seeds", ["compare", "experiments/x.yaml", "--seeds", "1,two"], ["--seeds 1,two"], EXP_FILES),
    Case(
        "study",
        "empty --seeds",
        ["compare", "experiments/x.yaml", "--seeds", ","],
        ["--seeds", "at least one seed"],
        EXP_FILES,
    ),
    Case("study", "suite with an unknown study", ["suite", "nope"], ["no study named 'nope'"]),
    Case(
        "study",
        "report with no runs yet",
        ["report", "experiments/x.yaml"],
        ["no runs yet", "mlp-lab compare"],
        EXP_FILES,
    ),
    Case(
        "study",
        "report --all with a name",
        ["report", "x", "--all"],
        ["--all covers every study", "give no EXPERIMENT"],
    ),
    Case("study", "report without a name", ["report"], ["missing EXPERIMENT"]),
    # -- search files -------------------------------------------------------------------------
    Case(
        "search",
        ".inf as a bound",
        ["search", "searches/s.yaml"],
        ["s.yaml", "params.train.optimizer.lr.high", "finite number"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("high: 0.1", "high: .inf")},
    ),
    Case(
        "search",
        "a torn Optuna journal",
        ["search", "searches/s.yaml"],
        ["out/s/study.journal", "not a readable Optuna journal", "line 1 cut short", "move it aside"],
        {
            "base.yaml": GOOD + "output: {dir: out}\n",
            "searches/s.yaml": SEARCH,
            "out/s/study.journal": '{"op_code": 0, "worker_id": "w", "study_na',
        },
    ),
    Case("search", "unknown search", ["search", "nope"], ["no search named 'nope'"]),
    Case(
        "search",
        "trials 0 and metric test/acc: both reported",
        ["search", "searches/s.yaml"],
        ["s.yaml"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("trials: 2", "trials: 0\nmetric: test/acc")},
        lines=2,
    ),
    Case(
        "search",
        "typo'd key: did-you-mean",
        ["search", "searches/s.yaml"],
        ["s.yaml", "trails", "did you mean 'trials'"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("trials: 2", "trails: 2")},
    ),
    Case(
        "search",
        "typo'd key in a parameter",
        ["search", "searches/s.yaml"],
        ["s.yaml", "params.train.optimizer.lr.lw", "did you mean 'params.train.optimizer.lr.low'"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("low:", "lw:")},
    ),
    Case(
        "search",
        "not a config key",
        ["search", "searches/s.yaml"],
        ["s.yaml", "params.train.optimizer.lrr", "did you mean"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("train.optimizer.lr:", "train.optimizer.lrr:")},
    ),
    Case(
        "search",
        "overrides with a bad dotted key",
        ["search", "searches/s.yaml"],
        ["s.yaml", "overrides.name.x", "is a str"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH + "overrides: {name.x: 1}\n"},
    ),
    Case(
        "search",
        "empty search file",
        ["search", "searches/s.yaml"],
        ["s.yaml", "file is empty"],
        {"searches/s.yaml": ""},
    ),
    Case(
        "search",
        "a tab in a search file",
        ["search", "searches/s.yaml"],
        ["s.yaml", "line 5", "tab in the indentation"],
        {"base.yaml": GOOD, "searches/s.yaml": SEARCH.replace("  train.optimizer.lr", "\ttrain.optimizer.lr")},
    ),
    Case(
        "search",
        "--confirm before any trial",
        ["search", "searches/s.yaml", "--confirm"],
        ["best.yaml", "no best trial yet"],
        SEARCH_FILES,
    ),
    # -- CLI arguments ------------------------------------------------------------------------
    Case("cli", "unknown command", ["frobnicate"], ["No such command 'frobnicate'"]),
    Case("cli", "unknown option", ["run", "c.yaml", "--bogus"], ["mlp-lab run", "No such option: --bogus", "--help"]),
    Case("cli", "missing argument", ["compare"], ["mlp-lab compare", "Missing argument"]),
    Case("cli", "--threads 0", ["run", "c.yaml", "--threads", "0"], ["'--threads'", "greater than or equal to 1"]),
    Case("cli", "--jobs 0", ["compare", "x", "--jobs", "0"], ["'--jobs'"]),
    Case("cli", "--backend unknown", ["compare", "x", "--backend", "slurm"], ["'--backend'", "'slurm'"]),
    Case(
        "cli",
        "--address without ray",
        ["compare", "experiments/x.yaml", "--address", "auto"],
        ["--address joins a Ray cluster"],
        EXP_FILES,
    ),
    Case("cli", "--trials 0", ["search", "s", "--trials", "0"], ["'--trials'"]),
    Case("cli", "--top-k 0", ["predict", "{run}", "x.png", "--top-k", "0"], ["'--top-k'"]),
    Case(
        "cli",
        "--normalise unknown",
        ["predict", "{run}", "x.png", "--normalise", "blur"],
        ["'--normalise'", "'blur'", "plain"],
    ),
    Case("cli", "--split unknown", ["evaluate", "{run}", "--split", "train"], ["--split train"]),
    Case("cli", "--repeats 0", ["bench", "--repeats", "0"], ["'--repeats'"]),
    Case("cli", "--port out of range", ["ui", "--port", "70000"], ["'--port'"]),
    Case("cli", "register without --name", ["register", "{run}"], ["Missing option '--name'"]),
    Case("cli", "run with no config", ["run"], ["missing CONFIG"]),
    Case(
        "cli",
        "run --resume with a config",
        ["run", "c.yaml", "--resume", "{run}"],
        ["--resume takes the config"],
        {"c.yaml": GOOD},
    ),
    Case("cli", "run --resume with --run-dir", ["run", "--resume", "{run}", "--run-dir", "x"], ["give no --run-dir"]),
    Case(
        "cli",
        "list --configs-dir at a file",
        ["list", "--configs-dir", "c.yaml"],
        ["--configs-dir c.yaml", "is a file"],
        {"c.yaml": GOOD},
    ),
    Case("cli", "app --port 0", ["app", "--port", "0"], ["mlp-lab app", "'--port'"]),
    Case("cli", "models --output-dir at a file", ["models", "--output-dir", "c.yaml"], ["c.yaml"], {"c.yaml": GOOD}),
    Case(
        "cli",
        "--data-dir that does not exist",
        ["run", "c.yaml", "--data-dir", "nowhere"],
        ["--data-dir nowhere", "no such directory"],
        {"c.yaml": TINY},
    ),
    Case(
        "cli",
        "--data-dir at a file",
        ["compare", "experiments/x.yaml", "--data-dir", "base.yaml"],
        ["--data-dir base.yaml", "is a file"],
        EXP_FILES,
    ),
    Case("cli", "data for an unknown dataset", ["data", "svhn"], ["'svhn'", "unknown", "fashion_mnist"]),
    Case("cli", "data with nothing to describe", ["data"], ["give a DATASET"]),
    # -- output locations ---------------------------------------------------------------------
    Case(
        "output",
        "run --run-dir at an existing file",
        ["run", "c.yaml", "--run-dir", "taken"],
        ["taken", "is a file"],
        {"c.yaml": TINY, "taken": "a file"},
    ),
    Case(
        "output",
        "run --run-dir at a non-empty directory",
        ["run", "c.yaml", "--run-dir", "full"],
        ["full", "not empty"],
        {"c.yaml": TINY, "full/x": "x"},
    ),
    Case(
        "output",
        "output.dir is a file",
        ["run", "c.yaml", "--set", "output.dir=taken"],
        ["output.dir", "taken", "is a file"],
        {"c.yaml": TINY, "taken": "a file"},
    ),
    Case(
        "output",
        "output.dir cannot be created",
        ["run", "c.yaml", "--set", "output.dir=/proc/nope"],
        ["output.dir /proc/nope", "no such file or directory"],
        {"c.yaml": TINY},
        code=3,
    ),
    Case(
        "output",
        "data.root cannot be created",
        ["run", "c.yaml", "--set", "data.root=/proc/nope"],
        ["data.root /proc/nope", "no such file or directory"],
        {"c.yaml": TINY},
        code=3,
        env={"MLP_LAB_DATA": "{idx}"},
    ),
    Case(
        "output",
        "resume a directory that is not a run",
        ["run", "--resume", "empty"],
        ["empty", "not a run directory"],
        {"empty/.keep": ""},
    ),
    Case(
        "output",
        "data.root is a file",
        ["run", "c.yaml", "--set", "data.root=taken"],
        ["data.root taken", "is a file"],
        {"c.yaml": TINY, "taken": "a file"},
        env={"MLP_LAB_DATA": "{idx}"},
    ),
    # -- images -------------------------------------------------------------------------------
    Case(
        "image", "predict a missing image", ["predict", "{run}", "missing.png"], ["missing.png", "image file not found"]
    ),
    Case(
        "image",
        "predict a directory",
        ["predict", "{run}", "imgs"],
        ["imgs", "is a directory", "imgs/*.png"],
        setup=_images,
    ),
    Case(
        "image",
        "predict a file that is not an image",
        ["predict", "{run}", "notes.txt"],
        ["notes.txt", "not a readable image"],
        setup=_images,
    ),
    Case(
        "image",
        "predict an empty .png",
        ["predict", "{run}", "empty.png"],
        ["empty.png", "not a readable image"],
        {"empty.png": b""},
    ),
    Case(
        "image",
        "predict one good and one bad image",
        ["predict", "{run}", "imgs/good.png", "notes.txt"],
        ["notes.txt", "not a readable image"],
        setup=_images,
        stdout="imgs/good.png: ",
    ),
    Case(
        "image",
        "predict a decompression bomb",
        ["predict", "{run}", "bomb.png"],
        ["bomb.png", "the image is too large: 256,000,000 pixels, at most 25,000,000", "smaller picture"],
        setup=_hostile_images,
    ),
    Case(
        "image",
        "predict a blank picture",
        ["predict", "{run}", "white.png"],
        ["white.png", "blank", "no ink", "nothing to classify"],
        setup=_hostile_images,
    ),
    Case(
        "image",
        "predict a truncated PNG",
        ["predict", "{run}", "cut.png"],
        ["cut.png", "not a readable image (OSError)"],
        setup=_hostile_images,
    ),
    Case(
        "image",
        "predict a link to a deleted file",
        ["predict", "{run}", "gone.png"],
        ["gone.png", "deleted.png, which does not exist"],
        setup=_hostile_images,
    ),
    Case(
        "image",
        "predict binary garbage named .jpg",
        ["predict", "{run}", "noise.jpg"],
        ["noise.jpg", "not a readable image"],
        {"noise.jpg": bytes(range(256)) * 20},
    ),
    # -- run directories and checkpoints ------------------------------------------------------
    Case(
        "checkpoint",
        "evaluate a directory that is not a run",
        ["evaluate", "empty"],
        ["empty", "not a run directory"],
        {"empty/.keep": ""},
    ),
    Case("checkpoint", "evaluate a file", ["evaluate", "c.yaml"], ["c.yaml", "not a run directory"], {"c.yaml": GOOD}),
    Case(
        "checkpoint", "evaluate a diverged run", ["evaluate", "{diverged}"], ["this run diverged", "train/loss became"]
    ),
    Case(
        "checkpoint",
        "predict with a diverged run",
        ["predict", "{diverged}", "imgs/good.png"],
        ["this run diverged"],
        setup=_images,
    ),
    Case(
        "checkpoint",
        "evaluate with best.pt cut short",
        ["evaluate", "copy"],
        ["best.pt: truncated or corrupt", "not a readable mlp-lab checkpoint", "train the run again"],
        setup=_cut("checkpoints/best.pt"),
    ),
    Case(
        "checkpoint",
        "evaluate with best.pt missing",
        ["evaluate", "copy"],
        ["best.pt", "checkpoint not found"],
        setup=_remove("checkpoints/best.pt"),
    ),
    Case(
        "checkpoint",
        "evaluate with summary.json torn",
        ["evaluate", "copy"],
        ["summary.json", "not valid JSON", "mlp-lab run --resume"],
        setup=_replace("summary.json", '{"status": "completed", "test/acc": 0.9'),  # a write cut short
    ),
    Case(
        "checkpoint",
        "evaluate with config.yaml torn",
        ["evaluate", "copy"],
        ["config.yaml", "YAML syntax error"],
        setup=_replace("config.yaml", "name: tiny\nmodel: {hidden_sizes: [16\n"),
    ),
    Case(
        "checkpoint",
        "evaluate with summary.json a list",
        ["evaluate", "copy"],
        ["summary.json", "expected a JSON object, got list", "mlp-lab run --resume"],
        setup=_replace("summary.json", "[1, 2]"),
    ),
    Case(
        "checkpoint",
        "evaluate with best.pt a dangling link",
        ["evaluate", "copy"],
        ["best.pt", "symbolic link to a missing file"],
        setup=_run_with_dangling("checkpoints/best.pt"),
    ),
    Case(
        "checkpoint",
        "register a directory that is not a run",
        ["register", "empty", "--name", "m"],
        ["empty", "not a run directory"],
        {"empty/.keep": ""},
    ),
    Case("checkpoint", "track an unknown target", ["track", "nope"], ["no study named 'nope'"]),
    # -- dataset files (through --data-dir) ---------------------------------------------------
    Case(
        "dataset",
        "a truncated .gz IDX file",
        ["run", "c.yaml", "--data-dir", "bad"],
        ["bad/train-images-idx3-ubyte.gz", "truncated or corrupt", "complete copy"],
        {"c.yaml": TINY},
        setup=_dataset(_truncate("train-images-idx3-ubyte.gz")),
    ),
    Case(
        "dataset",
        "a truncated .gz labels file",
        ["run", "c.yaml", "--data-dir", "bad"],
        ["bad/train-labels-idx1-ubyte.gz", "truncated or corrupt"],
        {"c.yaml": TINY},
        setup=_dataset(_truncate("train-labels-idx1-ubyte.gz")),
    ),
    Case(
        "dataset",
        "a .gz file that is not gzip",
        ["run", "c.yaml", "--data-dir", "bad"],
        ["bad/t10k-images-idx3-ubyte.gz", "truncated or corrupt"],
        {"c.yaml": TINY},
        setup=_dataset(_overwrite("t10k-images-idx3-ubyte.gz", b"not gzip at all")),
    ),
    Case(
        "dataset",
        "an IDX file with a bad magic number",
        ["run", "c.yaml", "--data-dir", "bad"],
        ["train-images-idx3-ubyte", "bad magic number"],
        {"c.yaml": TINY},
        setup=_dataset(_overwrite("train-images-idx3-ubyte", b"\x01\x02\x03\x04rest"), compress=False),
    ),
    Case(
        "dataset",
        "an IDX file shorter than its header says",
        ["run", "c.yaml", "--data-dir", "bad"],
        ["train-images-idx3-ubyte", "IDX header says"],
        {"c.yaml": TINY},
        setup=_dataset(_truncate("train-images-idx3-ubyte", 0.9), compress=False),
    ),
    Case(
        "dataset",
        "data --config with a bad config",
        ["data", "--config", "c.yaml"],
        ["c.yaml", "data.dataset"],
        {"c.yaml": "data: {dataset: svhn}\n"},
    ),
    # -- environment variables ----------------------------------------------------------------
    Case(
        "env",
        "MLP_LAB_DATA at a missing directory",
        ["run", "c.yaml"],
        ["mnist", "no copy found", "/nonexistent/data"],
        {"c.yaml": TINY},
        env={"MLP_LAB_DATA": "/nonexistent/data"},
    ),
    Case(
        "env",
        "MLP_LAB_DATA at a truncated dataset",
        ["run", "c.yaml"],
        ["train-images-idx3-ubyte.gz", "truncated or corrupt"],
        {"c.yaml": TINY},
        setup=_dataset(_truncate("train-images-idx3-ubyte.gz")),
        env={"MLP_LAB_DATA": "{tmp}/bad"},
    ),
]


def _study_folder(tmp: Path, runs: dict[str, Path]) -> None:
    """A study's folder as compare leaves it: runs/<study>/<arm>/seed-N (here under study/)."""
    shutil.copytree(runs["run"], tmp / "study" / "ladder" / "plain" / "seed-0")


# Messages that say what to type (issue 36): a section given a value, a study's folder given
# where a run is wanted, a checkpoint cut short, completion asked for a shell that has none.
CASES += [
    Case(
        "--set",
        "--set a section to a number (early stopping)",
        ["validate", "c.yaml", "--set", "train.early_stopping=5"],
        ["--set train.early_stopping=5", "is a section (patience, ", "train.early_stopping.patience=5"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set a section to a name (scheduler)",
        ["validate", "c.yaml", "--set", "train.scheduler=cosine"],
        ["train.scheduler: is a section", "train.scheduler.name=cosine"],
        {"c.yaml": GOOD},
    ),
    Case(
        "--set",
        "--set a section to a name (optimizer)",
        ["validate", "c.yaml", "--set", "train.optimizer=sgd"],
        ["train.optimizer: is a section", "train.optimizer.name=sgd"],
        {"c.yaml": GOOD},
    ),
    Case(
        "config",
        "a section given a value in the file",
        ["validate", "c.yaml"],
        ["c.yaml", "train.early_stopping: is a section", "train.early_stopping.patience=3"],
        {"c.yaml": "train:\n  early_stopping: 3\n"},
    ),
    Case(
        "config",
        "a section given a value no key takes",
        ["validate", "c.yaml"],
        ["c.yaml", "data.augment: is a section (rotation, ", "set one of its keys"],
        {"c.yaml": "data:\n  augment: true\n"},
    ),
    Case(
        "checkpoint",
        "evaluate a study's folder",
        ["evaluate", "study/ladder"],
        ["study/ladder: a study's folder", "study/ladder/plain/seed-0", "mlp-lab report ladder"],
        setup=_study_folder,
    ),
    Case(
        "cli",
        "track a run directory with --set",
        ["track", "{run}", "--set", "train.epochs=1"],
        ["a run directory keeps its own config", "--set applies to a study only"],
    ),
    Case(
        "cli",
        "register --set without --arm",
        ["register", "{run}", "--name", "m", "--set", "train.epochs=1"],
        ["--set applies to a study's runs; give --arm ARM with it"],
    ),
    Case(
        "cli",
        "--show-completion for a shell without completion",
        ["--show-completion", "sh"],
        ["no completion script for sh", "mlp-lab --show-completion bash"],
    ),
]

if not torch.cuda.is_available():
    CASES.append(
        Case(
            "config",
            "device cuda without a GPU",
            ["run", "c.yaml"],
            ["c.yaml", "train.device", "no CUDA GPU"],
            {"c.yaml": "train:\n  device: cuda\n"},
        )
    )
# Refused before torch is imported: everything about config, --set, study and search files
# and CLI arguments, except the checks that ask the machine (a GPU), read a run's checkpoint, or
# live in a module that imports torch (bench's rule on model.kind).
NEEDS_TORCH = {
    "device cuda without a GPU",
    "--confirm before any trial",
    "a torn Optuna journal",
    "models --output-dir at a file",
    "bench a CNN config",
}
for _case in CASES:
    _case.torch_free = _case.kind in ("config", "--set", "study", "search", "cli") and _case.name not in NEEDS_TORCH


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny finished run and a diverged one, shared by the cases that need a run directory."""
    from mlp_lab.training.trainer import TrainingDiverged, train

    base = tmp_path_factory.mktemp("runs")
    idx = write_idx_dataset(base / "idx")
    raw = {
        "name": "tiny",
        "data": {"dataset": "mnist", "root": str(base / "data"), "download": False},
        "model": {"hidden_sizes": [16]},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
        "output": {"dir": str(base), "tensorboard": False},
    }
    train(validate_config(raw, "tiny"), base / "run", context=RunContext(data_dirs=(str(idx),)))
    raw["train"] = {"epochs": 2, "batch_size": 64, "device": "cpu", "optimizer": {"name": "sgd", "lr": 1e6}}
    with pytest.raises(TrainingDiverged):
        train(validate_config(raw, "diverged"), base / "diverged", context=RunContext(data_dirs=(str(idx),)))
    return {"run": base / "run", "diverged": base / "diverged", "idx": idx}


def _fill(text: str, tmp: Path, runs: dict[str, Path]) -> str:
    for key, path in (("tmp", tmp), *runs.items()):
        text = text.replace("{" + key + "}", str(path))
    return text


def _prepare(case: Case, tmp: Path, runs: dict[str, Path]) -> list[str]:
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if case.setup is not None:
        case.setup(tmp, runs)
    return [_fill(a, tmp, runs) for a in case.args]


def _normalised(text: str, tmp: Path, runs: dict[str, Path]) -> str:
    """A message as the docs show it: no temp paths, nothing that depends on this machine."""
    for key, path in sorted(runs.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(path), key.upper())
    text = text.replace(str(tmp) + "/", "").replace(str(tmp), ".")
    text = re.sub(r"this machine has [\d.,]+ GiB", "this machine has N GiB", text)
    return text


def _docs_rows() -> dict[str, dict[str, str]]:
    rows = {}
    if DOCS.exists():
        for line in DOCS.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if line.startswith("| ") and len(cells) == 5 and cells[0] not in ("kind", "---"):
                rows[f"{cells[0]}: {cells[2]}"] = {
                    "kind": cells[0],
                    "name": cells[2],
                    "command": cells[1],
                    "code": cells[3],
                    "message": cells[4],
                }
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " <br> ")


def _command(case: Case) -> str:
    shown = [a if len(a) < 40 else a[:30] + "..." for a in case.args]
    return "`mlp-lab " + " ".join(shown).replace("{", "").replace("}", "").replace("|", "/") + "`"


OBSERVED: dict[str, str] = {}


def _no_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}: {c.name}")
def test_case_gives_clear_lines_and_writes_nothing(case, tmp_path, monkeypatch, runs):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, _fill(value, tmp_path, runs))
    args = _prepare(case, tmp_path, runs)
    result = runner.invoke(app, args)
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == case.lines, lines
    for line in lines:
        assert line.startswith("error: ") and len(line) <= MAX_LINE, line
    joined = "\n".join(lines)
    for fragment in case.expect:
        assert _fill(fragment, tmp_path, runs) in joined, (fragment, joined)
    if case.stdout is not None:
        assert case.stdout in result.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*")), "something was written"
    assert not _no_temporaries(tmp_path), "a temporary file was left"
    message = _normalised(joined, tmp_path, runs)
    OBSERVED[case.key] = message
    if not WRITE_DOCS:
        row = _docs_rows().get(case.key)
        assert row is not None, f"{case.key!r} is not in {DOCS}; run MLP_LAB_WRITE_DOCS=1 pytest tests/test_errors.py"
        assert row["message"] == _cell(message) and row["code"] == str(case.code), (row, message)


def test_case_names_are_unique_and_the_table_covers_every_verb():
    assert len({c.key for c in CASES}) == len(CASES)
    verbs = {c.verb for c in CASES}
    for verb in (
        "run",
        "validate",
        "compare",
        "report",
        "suite",
        "search",
        "data",
        "summary",
        "evaluate",
        "predict",
        "track",
        "register",
        "bench",
        "ui",
        "list",
        "models",
        "app",
    ):
        assert verb in verbs, verb
    assert len(CASES) >= 90


def test_out_of_memory_is_a_fault_not_a_traceback(capsys):
    """torch's CPU allocator refusing (a real allocation far beyond any machine) is one line, exit 3."""
    import typer

    from mlp_lab.cli.common import user_errors

    with pytest.raises(typer.Exit) as info, user_errors():
        torch.empty(10**13)
    assert info.value.exit_code == 3
    line = _one_error_line(capsys.readouterr().err)
    assert "out of memory (40000000000000 bytes asked for)" in line and "smaller model" in line


@pytest.mark.slow
def test_checks_that_need_no_torch_run_before_torch_is_imported(tmp_path, runs):
    """One process for every torch-free case: after each, torch must still be unloaded."""
    plan = []
    for i, case in enumerate(c for c in CASES if c.torch_free):
        work = tmp_path / f"case-{i}"
        work.mkdir()
        plan.append({"name": case.name, "dir": str(work), "args": _prepare(case, work, runs), "code": case.code})
    code = (
        "import json, os, sys\nfrom mlp_lab.cli import app\nplan = json.loads(sys.argv[1])\nout = []\n"
        "for case in plan:\n    os.chdir(case['dir'])\n"
        "    code = app(case['args'], prog_name='mlp-lab', standalone_mode=False)\n"
        "    out.append([case['name'], code, 'torch' in sys.modules])\nprint(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLP_LAB_DATA"}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(plan)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(plan) >= 60
    for (name, code_seen, torch_loaded), case in zip(results, plan):
        assert code_seen == case["code"], name
        assert not torch_loaded, f"{name}: torch was imported before the error"


# -- faults of the machine: a full disk, read-only and vanishing directories ---------------------

FAULTS: list[dict[str, str]] = []  # what each fault printed, for the docs table


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


needs_root = pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root")


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs at `path` (a disk that can fill up, or a read-only one), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fault_config(tmp: Path, out: Path, epochs: int = 3, hidden: int = 256) -> Path:
    path = tmp / "c.yaml"
    path.write_text(
        f"name: full\ndata: {{dataset: mnist, root: {tmp}/data, download: false, val_fraction: 0.2}}\n"
        f"model: {{hidden_sizes: [{hidden}]}}\ntrain: {{epochs: {epochs}, batch_size: 64, device: cpu}}\n"
        f"output: {{dir: {out}, tensorboard: true}}\n"
    )
    return path


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _record(name: str, command: str, code: int, line: str, tmp: Path) -> None:
    FAULTS.append(
        {
            "name": name,
            "command": command,
            "code": str(code),
            "message": line.replace(str(tmp) + "/", "").replace(str(tmp), "."),
        }
    )


@needs_root
def test_disk_full_at_the_first_checkpoint_then_resume(tmp_path, monkeypatch, runs):
    monkeypatch.setenv("MLP_LAB_DATA", str(runs["idx"]))
    with tmpfs(tmp_path / "disk", "2m") as disk:
        config = _fault_config(tmp_path, disk / "runs")
        result = runner.invoke(app, ["run", str(config)])
        assert result.exit_code == 3, result.output
        line = _one_error_line(result.stderr)
        run_dir = disk / "runs" / "full"
        assert "no space left on device" in line and f"then: mlp-lab run --resume {run_dir}" in line
        assert str(run_dir / "checkpoints") in line  # names the file that could not be written
        assert not _no_temporaries(disk), "a partial temporary was left on the full disk"
        _record("disk full (2 MB) at the first checkpoint", "`mlp-lab run c.yaml`", 3, line, tmp_path)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
        resumed = runner.invoke(app, ["run", "--resume", str(run_dir)])
        assert resumed.exit_code == 0, resumed.output
        assert rundir.read_json(run_dir / "summary.json")["status"] == "completed"
        assert len(rundir.read_metrics(run_dir)) == 3


def _start(args: list[str], tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlp_lab", *args],
        cwd=tmp,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_epoch(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.csv").exists():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError("training did not progress")


@needs_root
@pytest.mark.slow  # spawns a training process
def test_disk_filling_after_an_epoch_keeps_the_last_checkpoint_and_metrics(tmp_path, runs):
    from mlp_lab.training.checkpoint import load_checkpoint

    with tmpfs(tmp_path / "disk", "64m") as disk:
        config = _fault_config(tmp_path, disk / "runs", epochs=30, hidden=512)
        run_dir = disk / "runs" / "full"
        process = _start(["run", str(config)], tmp_path, {"MLP_LAB_DATA": str(runs["idx"])})
        _wait_for_epoch(run_dir, process)
        with open(disk / "filler", "wb") as filler:  # another program fills the disk
            try:
                while True:
                    filler.write(b"\0" * (1 << 20))
                    filler.flush()
            except OSError:
                pass
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 3, stderr
        line = _one_error_line(stderr)
        assert "no space left on device" in line and f"mlp-lab run --resume {run_dir}" in line
        assert not _no_temporaries(disk)
        done = len(rundir.read_metrics(run_dir))  # whole: every row a complete epoch
        assert done >= 1
        assert load_checkpoint(run_dir / "checkpoints" / "last.pt", "last")["epoch"] == done
        _record("disk fills up after epoch 1", "`mlp-lab run c.yaml`", 3, line, tmp_path)
        (disk / "filler").unlink()
        resumed = subprocess.run(
            [sys.executable, "-m", "mlp_lab", "run", "--resume", str(run_dir)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "MLP_LAB_DATA": str(runs["idx"])},
        )
        assert resumed.returncode == 0, resumed.stderr
        assert len(rundir.read_metrics(run_dir)) == 30


@needs_root
def test_read_only_output_directory(tmp_path, monkeypatch, runs):
    monkeypatch.setenv("MLP_LAB_DATA", str(runs["idx"]))
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        result = runner.invoke(app, ["run", str(_fault_config(tmp_path, ro))])
        assert result.exit_code == 3, result.output
        line = _one_error_line(result.stderr)
        assert "output.dir" in line and "read-only file system" in line
        _record("read-only output.dir", "`mlp-lab run c.yaml`", 3, line, tmp_path)


@needs_root
def test_read_only_data_root(tmp_path, monkeypatch, runs):
    monkeypatch.setenv("MLP_LAB_DATA", str(runs["idx"]))
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        config = _fault_config(tmp_path, tmp_path / "runs")
        result = runner.invoke(app, ["run", str(config), "--set", f"data.root={ro}"])
        assert result.exit_code == 3, result.output
        line = _one_error_line(result.stderr)
        assert "data.root" in line and "read-only file system" in line
        assert not any((tmp_path / "runs").rglob("*"))
        _record("read-only data.root", "`mlp-lab run c.yaml --set data.root=RO`", 3, line, tmp_path)


@needs_root
def test_compare_onto_a_full_disk(tmp_path, monkeypatch, runs):
    monkeypatch.setenv("MLP_LAB_DATA", str(runs["idx"]))
    monkeypatch.chdir(tmp_path)
    with tmpfs(tmp_path / "disk", "2m") as disk:
        _fault_config(tmp_path, disk / "runs").rename(tmp_path / "base.yaml")
        (tmp_path / "experiments").mkdir()
        (tmp_path / "experiments" / "x.yaml").write_text(EXP.replace("seeds: [0]", "seeds: [0, 1]"))
        result = runner.invoke(app, ["compare", "x"])
        assert result.exit_code == 3, result.output
        line = _one_error_line(result.stderr)
        assert "stopped by a fault of the machine" in line and "no space left on device" in line
        assert not _no_temporaries(disk)
        _record("disk full during a study", "`mlp-lab compare x`", 3, line, tmp_path)


@pytest.mark.slow  # spawns a training process
def test_output_directory_vanishing_mid_run(tmp_path, runs):
    config = _fault_config(tmp_path, tmp_path / "runs", epochs=30, hidden=512)
    run_dir = tmp_path / "runs" / "full"
    process = _start(["run", str(config)], tmp_path, {"MLP_LAB_DATA": str(runs["idx"])})
    _wait_for_epoch(run_dir, process)
    # The run keeps writing while the tree goes, so one rmtree can meet a file created after it
    # listed a folder ("Directory not empty"), as `rm -rf` by a user can: delete until it is gone.
    deadline = time.monotonic() + 60
    while (tmp_path / "runs").exists() and time.monotonic() < deadline:
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
    assert not (tmp_path / "runs").exists()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr
    line = _one_error_line(stderr)
    assert "no such file or directory" in line
    _record("the output directory is deleted mid-run", "`mlp-lab run c.yaml`", 3, line, tmp_path)


def test_docs_table_is_true():
    """docs/errors.md lists every case with what it prints (checked row by row above); with
    MLP_LAB_WRITE_DOCS=1, after a full run of this file, it is written afresh."""
    documented = _docs_rows()
    if WRITE_DOCS:
        if len(OBSERVED) != len(CASES):
            pytest.skip("run the whole file to write the docs")
        DOCS.write_text(_render())
        return
    assert {k for k, row in documented.items() if row["kind"] != "fault"} == {c.key for c in CASES}, (
        "run MLP_LAB_WRITE_DOCS=1 pytest tests/test_errors.py"
    )
    # A fault's message depends on which write the full disk stopped: its row must exist.
    assert {f"fault: {f['name']}" for f in FAULTS} <= set(documented)


def _documented_faults() -> list[dict[str, str]]:
    """The faults' rows: as just measured where they ran, else as the docs hold them."""
    rows = {row["name"]: row for row in _docs_rows().values() if row["kind"] == "fault"}
    rows.update({fault["name"]: fault for fault in FAULTS})
    return list(rows.values())


def _render() -> str:
    lines = [
        "# Errors: what each bad input and fault prints",
        "",
        "Every failure is one line starting with `error:` (a file with several problems: one line each, all",
        "at once), names the file or flag and the dotted key, and has no traceback. Exit codes:",
        "",
        "| code | meaning |",
        "| --- | --- |",
        "| 2 | bad input: a config, study or search file, `--set`, a CLI argument, an image, a checkpoint, a dataset file, an environment variable, an output location that cannot be used; nothing is written |",
        "| 3 | a fault of the machine: a full disk, a read-only or vanished directory, too little memory; the last complete checkpoint and `metrics.csv` are intact, temporary files are removed, and the line says what to do (e.g. free space, then `mlp-lab run --resume DIR`) |",
        "| 1 | `compare` / `suite`: some runs failed for a reason of their own (e.g. diverged); the others finished |",
        "| 130, 143 | stopped by SIGINT / SIGTERM at a batch boundary, state saved: the line says how to resume |",
        "",
        "The table below is the matrix in `tests/test_errors.py`: each row is run by the test suite,",
        "and the message column is what it printed (temporary paths shortened; RUN is a finished run,",
        "DIVERGED a diverged one). A test fails when a message changes and this page does not;",
        "`MLP_LAB_WRITE_DOCS=1 pytest tests/test_errors.py` rewrites it. Signals (SIGINT, SIGTERM,",
        "kill -9 at random moments) are tested in `tests/test_reliability.py`; every file the tool reads",
        "back, damaged eight ways, in `tests/test_hostile_files.py`.",
        "",
        "| kind | command | case | exit | message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        lines.append(
            f"| {case.kind} | {_cell(_command(case))} | {case.name} | {case.code} | {_cell(OBSERVED[case.key])} |"
        )
    for fault in _documented_faults():
        lines.append(f"| fault | {fault['command']} | {fault['name']} | {fault['code']} | {_cell(fault['message'])} |")
    return "\n".join(lines) + "\n"
