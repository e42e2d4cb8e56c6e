"""Shared fixtures: tiny synthetic datasets written in the real on-disk formats, tiny configs."""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.runs import rundir
from mlp_lab.training.context import RunContext


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write a uint8 array as an IDX file (the MNIST format), gzipped like the official files."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def synthetic_images(n: int, rng: np.random.Generator, channels: int = 1, size: int = 28, classes: int = 10):
    """Learnable images: class k lights up its own horizontal band; the rest is noise."""
    labels = rng.integers(0, classes, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, channels, size, size)).astype(np.uint8)
    band = size // classes
    for i, k in enumerate(labels):
        images[i, :, k * band : (k + 1) * band, :] = rng.integers(150, 256, (channels, band, size))
    return images, labels


def write_idx_dataset(
    directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0, compress: bool = True
) -> Path:
    """The four MNIST-style IDX files, flat in `directory` (Debian's layout)."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = synthetic_images(n, rng)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images[:, 0], compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return directory


def write_cifar_dataset(root: Path, per_batch: int = 60, n_test: int = 100, seed: int = 0) -> Path:
    """CIFAR-10 in torchvision's `cifar-10-batches-py/` layout: pickled dicts, uint8 N x 3072."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        images, labels = synthetic_images(n_test if name == "test_batch" else per_batch, rng, channels=3, size=32)
        batch = {
            "batch_label": name,
            "labels": [int(v) for v in labels],
            "data": images.reshape(len(labels), -1),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": per_batch,
        "num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return root


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A flat directory holding four gzipped synthetic IDX files."""
    return write_idx_dataset(tmp_path / "idx")


@pytest.fixture
def tiny_config(tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory for a small, fast config over the synthetic IDX data (found through $MLP_LAB_DATA)."""
    monkeypatch.setenv("MLP_LAB_DATA", str(idx_dir))

    def make(**sections) -> Config:
        raw = {
            "name": "tiny",
            "seed": 0,
            "data": {"dataset": "mnist", "root": str(tmp_path / "data"), "download": False, "val_fraction": 0.2},
            "model": {"hidden_sizes": [32], "dropout": 0.1},
            "train": {"epochs": 4, "batch_size": 32, "device": "cpu"},
            "output": {"dir": str(tmp_path / "runs"), "tensorboard": False},
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                raw[key] = {**raw.get(key, {}), **value}
            else:
                raw[key] = value
        return validate_config(raw, "tiny.yaml")

    return make


# The hashes main (54897e0, numerics version 2) gave the shipped MLP configs before data.augment,
# model.kind and data.permute_pixels existed: those keys at their defaults must leave them as they
# were, so finished runs stay finished (compare them under NUMERICS_VERSION = 2).
SHIPPED_HASHES_NUMERICS_2 = {
    "baseline": "b0a6db89ddb7dfea",
    "cifar10": "471410c59a84bc0c",
    "fashion_best": "1fb20eb9dfdf39dd",
    "mnist": "efe824eeb0123eb5",
    "mnist_keras": "8682ac96fb1594ea",
    "plain": "0b925dc601199fb8",
}


def assert_resumes_identically(cfg: Config, tmp_path: Path) -> dict:
    """Train `cfg` uninterrupted, and again interrupted at step 5 of epoch 2 (of 15 steps an epoch)
    then resumed: metrics, test score and final weights must be equal. Returns the final weights."""
    from mlp_lab.training.checkpoint import load_checkpoint
    from mlp_lab.training.trainer import TrainingInterrupted, train

    full = train(cfg, tmp_path / "full")
    polls = {"n": 0}

    def stop_mid_epoch_two():
        polls["n"] += 1
        return polls["n"] == 20

    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "part", context=RunContext(stop=stop_mid_epoch_two))
    last = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt", "last")
    assert (last["epoch"], last["step"]) == (1, 4)
    resumed = train(cfg, tmp_path / "part", resume=True)
    assert metrics_without_timing(tmp_path / "part") == metrics_without_timing(tmp_path / "full")
    assert (resumed["test/acc"], resumed["test/loss"]) == (full["test/acc"], full["test/loss"])
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt", "last")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt", "last")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return a


def metrics_without_timing(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv rows without the timing columns: what must match between identical runs."""
    return [{k: v for k, v in row.items() if k not in rundir.TIMING_COLUMNS} for row in rundir.read_metrics(run_dir)]


def write_config(tmp_path: Path, cfg: Config, name: str = "tiny.yaml") -> Path:
    """A config written as YAML, as a user would have it on disk."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return path


def write_study(tmp_path: Path, tiny_config, arms=None, **fields) -> Path:
    """experiments/study.yaml over configs/tiny.yaml (3 epochs): dropout none vs half, seeds 0 and 1."""
    base = tmp_path / "configs" / "tiny.yaml"
    base.parent.mkdir(exist_ok=True)
    base.write_text(yaml.safe_dump(config_to_dict(tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"}))))
    study = {
        "description": "dropout on the tiny problem",
        "base": "../configs/tiny.yaml",
        "factor": "model.dropout",
        "reference": "none",
        "seeds": [0, 1],
        "arms": arms or {"none": {"model.dropout": 0.0}, "half": {"model": {"dropout": 0.5}}},
        **fields,
    }
    path = tmp_path / "experiments" / "study.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("# Run: mlp-lab compare study\n" + yaml.safe_dump(study, sort_keys=False))
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(
    url: str, process: subprocess.Popen, log: Path, what: str, timeout: float = 120.0, poll: float = 0.2
) -> None:
    """Poll `url` until it answers 200; fail with the tail of the server's `log` if `process`
    exits first or `timeout` seconds pass (readiness, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(poll)


GUARDED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1") if hasattr(signal, name)
)
_BASELINE: dict[str, object] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first (a stable sort: each kind keeps its order). xdist hands the last
    pending tests to whichever worker is free, so the suite ends on short tests and both workers
    finish together, instead of one running a 60-90 s test alone while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionstart(session: pytest.Session) -> None:
    # A suite started in the background (`nohup make test &`, a CI runner's job) inherits SIGINT
    # ignored, and its test processes and the CLIs they start would not meet Ctrl-C as a user's
    # do; and library code that puts Python's own handler back (a notebook kernel's client did,
    # once in a full run) then reads as a leak of whichever test ran. Start where a foreground
    # Python starts.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _BASELINE["signals"] = {sig: signal.getsignal(sig) for sig in GUARDED_SIGNALS}
    _BASELINE["cwd"] = os.getcwd()
    _BASELINE["main"] = sys.modules.get("__main__")


@pytest.fixture(autouse=True)
def _no_leaked_process_state(request: pytest.FixtureRequest):
    """Fail the test that leaves a signal handler or another working directory behind (and put
    them back): a SIGTERM handler left by one test once turned a SIGTERM sent to pytest into a
    failure of an unrelated later test. Compared with the session's start, so a leak from a
    module-scoped fixture is caught at its module's next test too."""
    yield
    leaked = []
    for sig, handler in _BASELINE["signals"].items():
        if signal.getsignal(sig) is not handler:
            leaked.append(f"a {signal.Signals(sig).name} handler ({signal.getsignal(sig)!r})")
            signal.signal(sig, handler)
    if os.getcwd() != _BASELINE["cwd"]:
        leaked.append(f"the working directory {os.getcwd()}")
        os.chdir(_BASELINE["cwd"])
    # Streamlit's AppTest runs the app's script as __main__ and leaves it there by design; a
    # process pool started later (spawn) re-imports __main__ in every worker, which then ran the
    # app's page code and printed Streamlit's warnings into an API test that expects silence.
    if sys.modules.get("__main__") is not _BASELINE["main"]:
        sys.modules["__main__"] = _BASELINE["main"]
    if leaked:
        pytest.fail(f"{request.node.nodeid} left {', '.join(leaked)} behind; restore it where it is set")


# What each kind of skip needs, as the one command that installs it (CI's .ci/run does the same).
_SKIP_NEEDS = (
    (("fashionmnist not available", "real data not available"), "apt", "dataset-fashion-mnist"),
    (("chromium",), "apt", "chromium"),
    (("could not import", "is not installed"), "pip", "-e '.[dev,track,search,app,ray]'"),
)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def install_command(reasons: list[str]) -> str | None:
    """The one command line that installs what the skip `reasons` name, or None if nothing does
    (no root for a tmpfs, no GPU)."""
    apt, pip = [], []
    for reason in reasons:
        for fragments, tool, package in _SKIP_NEEDS:
            if any(f in reason.lower() for f in fragments):
                (apt if tool == "apt" else pip).append(package)
                break
    parts = []
    if apt:
        parts.append(f"sudo apt-get install -y {' '.join(dict.fromkeys(apt))}")
    if pip:
        parts.append(f"python -m pip install {pip[0]}")
    return " && ".join(parts) or None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """At the end of a run: what skipped, grouped by reason, and the command that installs what
    those tests need (a run without Debian's dataset or Chromium otherwise skips them quietly)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if getattr(r, "when", "") != "teardown"]
    if not skipped:
        return
    counts: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        counts[reason] = counts.get(reason, 0) + 1
    terminalreporter.section(f"{len(skipped)} skipped: what they need")
    for reason, n in sorted(counts.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{n:4d} x {reason[:160]}")
    command = install_command(list(counts))
    if command:
        terminalreporter.write_line(f"to run them, install what they need: {command}")
    else:
        terminalreporter.write_line("nothing to install: they need this machine to differ (root, a GPU, a whole file)")
