"""The app's logic as plain functions: no streamlit here, so all of it is unit-tested.

- Drawings and uploads -> what the model sees and what it thinks (``classify``), with the caps and
  checks that turn bad input into one clear message (``read_upload``, ``EmptyDrawing``).
- Form values -> a Config through the same pydantic schema as a YAML file, errors per field
  (``form_to_config``).
- Runs as separate processes (``launch_run``, ``resume_in_background``, ``stop_run``): the app
  starts ``python -m mlp_lab run CONFIG --run-dir DIR``, the CLI's own start-run path, in its own
  session, so a browser refresh or a closed tab does not touch it. The run directory is the source
  of truth for progress (``run_progress``): the run lock's pid says whether it is alive,
  ``metrics.csv`` how far it got, ``summary.json`` how it ended.
- Run directories and study reports for the Runs page (``list_runs``, ``list_studies``,
  ``ensure_evaluation``).
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlp_lab import rundir, runindex
from mlp_lab.config import Config, ConfigError, MLPLabError, config_to_dict, config_to_yaml, validate_config
from mlp_lab.rundir import RunStatus

EXTRA = "pip install -e '.[app]'"
# What the app launched lives beside the runs, not in them: a run directory must be empty when
# its run starts, and `list`/reports must not see app bookkeeping as a run.
APP_DIR = ".app"
# Uploads: a phone photo is fine, a decompression bomb or a 200 MB TIFF is refused before decoding.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 25_000_000
# A drawing whose ink differs from its background by less than this (0..255) is empty.
BLANK_CONTRAST = 8.0
INPUT_FEATURES = {"mnist": 784, "fashion_mnist": 784, "cifar10": 3072}


def require_app_extra() -> None:
    """Fail with one line naming the extra when streamlit is missing.

    Found by spec, not imported: importing it costs seconds.
    """
    missing = [name for name in ("streamlit",) if importlib.util.find_spec(name) is None]
    if missing:
        raise MLPLabError(f"mlp-lab app needs the [app] extra ({', '.join(missing)} missing): {EXTRA}")


# -- drawings and uploads -------------------------------------------------------------------


class EmptyDrawing(MLPLabError):
    """Nothing drawn yet (or the canvas was cleared)."""


@dataclass(frozen=True)
class Classified:
    """What a model made of one picture: its 28x28 (or 32x32) view, all class probabilities,
    the top classes and how long preprocessing plus the forward pass took."""

    view: Any  # uint8 (C, H, W), before mean/std normalization: what a person can look at
    probabilities: list[float]
    top: list[dict[str, Any]]
    milliseconds: float

    @property
    def best(self) -> dict[str, Any]:
        return self.top[0]


MAX_CANVAS_BYTES = 2 * 1024 * 1024  # a 280 x 280 drawing is a few KB of PNG; anything far larger is not one
CANVAS_PREFIX = "data:image/png;base64,"


def canvas_image(data_url: str | None):
    """The canvas's drawing (a PNG data URL, as `canvas.drawing_canvas` returns it) -> a PIL image,
    or None before the first stroke. Anything else is one MLPLabError."""
    import base64

    from PIL import Image, UnidentifiedImageError

    if data_url is None:
        return None
    if not isinstance(data_url, str) or not data_url.startswith(CANVAS_PREFIX):
        raise MLPLabError("the canvas sent something that is not a PNG drawing: press Clear and draw again")
    if len(data_url) > MAX_CANVAS_BYTES:
        raise MLPLabError(f"the canvas sent {len(data_url) / 1e6:.1f} MB: too large for a drawing")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(data_url[len(CANVAS_PREFIX):], validate=True)))
        img.load()
    except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise MLPLabError(f"the canvas's drawing could not be read ({type(exc).__name__}): press Clear and draw again") from None
    return img


def ink_pixels(image_data: Any) -> int:
    """How many canvas pixels differ from the canvas's background (its corner): changes with every stroke."""
    import numpy as np

    from mlp_lab.predict import load_pixels

    pixels = load_pixels(image_data)[..., 0]
    return int(np.count_nonzero(np.abs(pixels - pixels[0, 0]) > BLANK_CONTRAST))


def classify(predictor: Any, image: Any, k: int = 3) -> Classified:
    """Run one picture (a canvas's RGBA array, a PIL image, a path) through a `predict.Predictor`.

    A missing or blank picture raises EmptyDrawing, which the page shows as a hint, not an error.
    """
    import numpy as np

    from mlp_lab.predict import load_pixels, top_classes

    if image is None:
        raise EmptyDrawing("draw a digit on the canvas (or upload a picture)")
    started = time.perf_counter()
    pixels = load_pixels(image)
    if float(np.ptp(pixels)) < BLANK_CONTRAST:
        raise EmptyDrawing("the canvas is empty: draw something")
    view = predictor.view(pixels)
    probabilities = predictor.probabilities([pixels])
    top = top_classes(probabilities, predictor.classes, k)[0]
    milliseconds = (time.perf_counter() - started) * 1000.0
    return Classified(view, probabilities[0].tolist(), top, milliseconds)


def bars_html(classes: list[str], probabilities: list[float]) -> str:
    """Every class's probability as a horizontal bar, in plain HTML (cheap for a browser to redraw)."""
    from html import escape

    top = max(range(len(probabilities)), key=probabilities.__getitem__)
    rows = []
    for index, (name, p) in enumerate(zip(classes, probabilities)):
        colour = "#e4572e" if index == top else "#4c78a8"
        rows.append(
            f'<div style="display:flex;align-items:center;gap:8px;margin:2px 0">'
            f'<span style="width:7em;text-align:right;white-space:nowrap;overflow:hidden">{escape(str(name))}</span>'
            f'<span style="flex:1;background:#eef0f4;height:16px;border-radius:2px">'
            f'<span style="display:block;width:{100 * p:.1f}%;background:{colour};height:100%;border-radius:2px"></span>'
            f'</span><span style="width:3.5em;text-align:right">{100 * p:.1f}%</span></div>')
    return f'<div class="mlp-bars" style="font-size:14px">{"".join(rows)}</div>'


def view_html(view: Any, scale: int) -> str:
    """uint8 (C, H, W), the model's view -> an inline PNG shown `scale` times larger with square pixels."""
    import base64

    from PIL import Image

    channels, height, width = view.shape
    array = view[0] if channels == 1 else view.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<img class="mlp-view" alt="the {width}x{height} picture the model sees" '
            f'src="data:image/png;base64,{data}" width="{width * scale}" height="{height * scale}" '
            f'style="image-rendering:pixelated;border:1px solid #bbb">')


def read_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS):
    """An uploaded file -> a PIL image, or one MLPLabError naming the file: too large, too many
    pixels (checked from the header, before decoding), or not a readable image."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise MLPLabError(f"{name}: {len(data) / 1e6:.1f} MB is too large (at most {max_bytes / 1e6:.0f} MB)")
    if not data:
        raise MLPLabError(f"{name}: the file is empty")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise MLPLabError(f"{name}: {width}x{height} pixels is too large (at most {max_pixels / 1e6:.0f} megapixels)")
        img.load()
    except MLPLabError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MLPLabError(f"{name}: not a readable PNG or JPEG image ({type(exc).__name__})") from None
    return img


# -- run directories ------------------------------------------------------------------------


@dataclass
class RunInfo:
    """One run directory as the app lists it."""

    path: Path
    label: str  # the path relative to the runs directory
    status: str  # a RunStatus value, or "running"
    dataset: str = "?"
    hidden_sizes: list[int] = field(default_factory=list)
    parameters: int | None = None
    test_acc: float | None = None
    wall_time_s: float | None = None
    epochs_run: int = 0
    epochs_planned: int | None = None
    pid: int | None = None

    @property
    def architecture(self) -> str:
        """e.g. 784-256-128-10."""
        sizes = [INPUT_FEATURES.get(self.dataset, "?"), *self.hidden_sizes, 10]
        return "-".join(map(str, sizes))

    def describe(self) -> str:
        """One line for a model picker: name, dataset, architecture, test accuracy."""
        acc = f"test acc {self.test_acc:.2%}" if self.test_acc is not None else "not tested"
        return f"{self.label} ({self.dataset}, {self.architecture}, {acc})"

    def row(self) -> dict[str, Any]:
        """A table row for the Runs page."""
        epochs = f"{self.epochs_run}/{self.epochs_planned}" if self.epochs_planned else str(self.epochs_run)
        return {"run": self.label, "status": self.status, "dataset": self.dataset, "model": self.architecture,
                "parameters": self.parameters, "epochs": epochs,
                "test acc %": None if self.test_acc is None else round(100 * self.test_acc, 2),
                "time s": None if self.wall_time_s is None else round(self.wall_time_s, 1)}


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live mlp-lab process (not a zombie, not a recycled pid of something else)."""
    if pid <= 0:
        return False
    try:
        # The app is the parent of what it launched: reap a finished child so it is not a zombie.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            return False
        return state != "Z" and (b"mlp_lab" in command or b"mlp-lab" in command)
    return True


def _recorded_pids(run_dir: Path) -> list[int]:
    """Pids that may be training into `run_dir`: its lock file's owner, and what the app launched."""
    pids = []
    lock = run_dir.parent / f".{run_dir.name}.lock"
    for path, read in ((lock, lambda p: p.read_text().strip()),
                       (_sidecar(run_dir, ".json"), lambda p: str(rundir.read_json(p).get("pid", "")))):
        try:
            text = read(path)
        except (OSError, ValueError):
            continue
        if text.isdigit():
            pids.append(int(text))
    return pids


def running_pid(run_dir: str | Path) -> int | None:
    """The pid of the live process training into `run_dir`, or None."""
    run_dir = Path(run_dir)
    if (run_dir / rundir.SUMMARY_FILE).exists():
        return None
    return next((pid for pid in _recorded_pids(run_dir) if _pid_alive(pid)), None)


def _run_info(run_dir: Path, label: str, facts: dict[str, Any]) -> RunInfo:
    """A RunInfo from a run's file facts (`runindex.read_facts`) and whether it is training now,
    which is checked live: a process that dies changes none of the run's files."""
    status = facts["status"]
    # Only a run without summary.json can be running (`running_pid` checks that first): skip the
    # lock and /proc reads for every finished one.
    pid = running_pid(run_dir) if status not in (RunStatus.DONE.value, RunStatus.FAILED.value) else None
    return RunInfo(run_dir, label, "running" if pid else status, pid=pid,
                   **{key: value for key, value in facts.items() if key != "status"})


def describe_run(run_dir: str | Path, runs_dir: str | Path | None = None) -> RunInfo:
    """A run directory's status and facts, read from its files (a missing file leaves a '?')."""
    run_dir = Path(run_dir)
    label = str(run_dir.relative_to(runs_dir)) if runs_dir is not None else run_dir.name
    return _run_info(run_dir, label, runindex.read_facts(run_dir))


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run directory under `runs_dir` (any depth: studies nest them), sorted by path.

    Unchanged runs' facts come from the runs index (`runindex`), so a page over 1,000 runs stays
    well under a second; what it lists is what reading every run directory would list.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [_run_info(*run) for run in runindex.indexed_facts(runs_dir)]


def finished_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Runs with a tested model: what the Draw page offers."""
    return [run for run in list_runs(runs_dir) if run.status == RunStatus.DONE.value]


def registered_models(runs_dir: str | Path) -> list[str]:
    """``models:/NAME@ALIAS`` for every alias in the tracking registry, when the [track] extra is
    installed and a store exists; otherwise none (the app works without tracking)."""
    if importlib.util.find_spec("mlflow") is None:
        return []
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (Path(runs_dir) / "mlflow.db").exists():
        return []
    from mlp_lab.tracking.registry import list_models

    try:
        rows = list_models(runs_dir)
    except MLPLabError:
        return []
    return sorted({f"models:/{row['name']}@{alias}" for row in rows for alias in row["aliases"]})


def model_dir(choice: str, runs_dir: str | Path) -> Path:
    """A picker choice (a run directory, or a registered model URI) -> a run directory on disk."""
    if choice.startswith("models:/"):
        from mlp_lab.tracking.registry import materialize

        return materialize(choice, runs_dir)
    return Path(choice)


def checkpoint_stamp(run_dir: str | Path) -> float:
    """When the run's checkpoints last changed: part of the model cache's key, so a retrained or
    replaced run is reloaded. A directory deleted while open is one clear MLPLabError."""
    run_dir = Path(run_dir)
    try:
        return max(p.stat().st_mtime for p in [run_dir / rundir.CONFIG_FILE, *run_dir.glob(f"{rundir.CHECKPOINT_DIR}/*.pt")])
    except (OSError, ValueError):
        raise MLPLabError(f"{run_dir}: this run directory no longer exists (deleted or moved); pick another model") from None


# -- the Train form ---------------------------------------------------------------------------

# Form field -> the dotted config key it sets. The form shows the config's main fields only;
# everything else comes from the base config.
FORM_KEYS = {
    "name": "name",
    "dataset": "data.dataset",
    "hidden_sizes": "model.hidden_sizes",
    "batch_norm": "model.batch_norm",
    "dropout": "model.dropout",
    "optimizer": "train.optimizer.name",
    "lr": "train.optimizer.lr",
    "scheduler": "train.scheduler.name",
    "epochs": "train.epochs",
    "patience": "train.early_stopping.patience",
    "l1": "train.l1",
    "l2": "train.l2",
    "seed": "seed",
}
FORM_ERRORS = "_form"  # errors that belong to no single field (a cross-field rule on a hidden key)


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def form_defaults(base: Config) -> dict[str, Any]:
    """The form's initial values from a config: hidden sizes as text, patience 0 meaning off."""
    data = config_to_dict(base)
    values = {name: _get(data, key) for name, key in FORM_KEYS.items()}
    values["hidden_sizes"] = ", ".join(map(str, values["hidden_sizes"]))
    values["patience"] = values["patience"] or 0
    for name in ("lr", "l1", "l2"):
        values[name] = f"{values[name]:g}"
    return values


def _parse_sizes(text: Any) -> list[int]:
    if isinstance(text, (list, tuple)):
        return list(text)
    parts = str(text).replace(",", " ").replace("-", " ").split()
    if not all(part.isdigit() for part in parts):
        raise ValueError("whole numbers separated by commas, e.g. 256, 128 (empty: logistic regression)")
    return [int(part) for part in parts]


def _parse_float(text: Any) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise ValueError(f"not a number: {text!r} (e.g. 0.001 or 1e-3)") from None


def form_to_config(values: Mapping[str, Any], base: Config, output_dir: str | Path) -> tuple[Config | None, dict[str, str]]:
    """Form values -> a Config validated by the same schema as a YAML file, or None and one
    message per field (``FORM_ERRORS`` for problems no form field owns). Nothing is started here."""
    errors: dict[str, str] = {}
    data = config_to_dict(base)
    parsers = {"hidden_sizes": _parse_sizes, "lr": _parse_float, "l1": _parse_float, "l2": _parse_float}
    for name, key in FORM_KEYS.items():
        if name not in values:
            continue
        value = values[name]
        if name in parsers:
            try:
                value = parsers[name](value)
            except ValueError as exc:
                errors[name] = str(exc)
                continue
        if name == "patience" and value in (0, None, ""):
            value = None  # 0 in the form: early stopping off
        if name == "name" and isinstance(value, str):
            value = value.strip()
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    data["output"]["dir"] = str(output_dir)
    if errors:
        return None, errors
    key_to_field = {key: name for name, key in FORM_KEYS.items()}
    try:
        return validate_config(data, "form"), {}
    except ConfigError as exc:
        for line in exc.errors:
            _, _, rest = line.partition(": ")
            dotted, _, message = rest.partition(": ")
            # A list item's error (model.hidden_sizes[0]) belongs to its list's field.
            name = key_to_field.get(dotted.split("[")[0], FORM_ERRORS)
            if name == FORM_ERRORS:
                message = f"{dotted}: {message}"
            errors[name] = f"{errors[name]}; {message}" if name in errors else message
        return None, errors


# -- runs as separate processes ------------------------------------------------------------


def _sidecar(run_dir: Path, suffix: str) -> Path:
    return run_dir.parent / APP_DIR / f"{run_dir.name}{suffix}"


def _spawn(command: list[str], run_dir: Path, action: str) -> int:
    """Start `command` in its own session (a browser refresh, or the app's own Ctrl-C, does not
    reach it), output appended to the run's log beside the runs; record its pid there."""
    log_path = _sidecar(run_dir, ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rundir.write_json(_sidecar(run_dir, ".json"), {"pid": process.pid, "action": action, "command": command,
                                                   "started": time.time()})
    return process.pid


def _common_args(data_dirs: Sequence[str], threads: int | None) -> list[str]:
    args = [arg for d in data_dirs for arg in ("--data-dir", str(d))]
    return args + (["--threads", str(threads)] if threads else [])


def launch_run(config: Config, data_dirs: Sequence[str] = (), threads: int | None = None) -> Path:
    """Start training `config` in a separate process and return its run directory at once.

    The directory (``<output.dir>/<name>``, else ``<name>-2``, ...) is made here, so the caller
    knows it before the process starts; the process is ``python -m mlp_lab run CONFIG --run-dir DIR``,
    i.e. `train.start_run` behind the CLI's signal handling (SIGINT saves last.pt).
    """
    run_dir, _ = rundir.fresh_run_dir(config.output.dir, config.name)
    config_path = _sidecar(run_dir, ".yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(config_path, config_to_yaml(config))
    command = [sys.executable, "-m", "mlp_lab", "run", str(config_path), "--run-dir", str(run_dir),
               *_common_args(data_dirs, threads)]
    _spawn(command, run_dir, "start")
    return run_dir


def resume_in_background(run_dir: str | Path, data_dirs: Sequence[str] = (), threads: int | None = None) -> int:
    """Continue a stopped run from its last.pt in a separate process; returns its pid."""
    run_dir = Path(run_dir)
    if running_pid(run_dir):
        raise MLPLabError(f"{run_dir}: is still running")
    if not (run_dir / rundir.LAST_CHECKPOINT).exists():
        raise MLPLabError(f"{run_dir}: nothing to resume (no {rundir.LAST_CHECKPOINT})")
    command = [sys.executable, "-m", "mlp_lab", "run", "--resume", str(run_dir), *_common_args(data_dirs, threads)]
    return _spawn(command, run_dir, "resume")


def stop_run(run_dir: str | Path) -> int:
    """Ask the process training into `run_dir` to stop: SIGINT, as Ctrl-C, so it finishes the
    batch, writes last.pt and exits; returns its pid."""
    pid = running_pid(run_dir)
    if pid is None:
        raise MLPLabError(f"{run_dir}: not running")
    os.kill(pid, signal.SIGINT)
    return pid


def wait_until_stopped(run_dir: str | Path, timeout: float = 60.0) -> bool:
    """Poll until no process trains into `run_dir`; True if it stopped within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while running_pid(run_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Progress:
    """How far a run has got, from its directory alone."""

    run: RunInfo
    history: list[dict[str, float]]
    log_tail: str
    error: str | None

    @property
    def running(self) -> bool:
        return self.run.status == "running"

    @property
    def resumable(self) -> bool:
        return not self.running and self.run.status == RunStatus.PARTIAL.value

    @property
    def finished(self) -> bool:
        return self.run.status in (RunStatus.DONE.value, RunStatus.FAILED.value)


def run_progress(run_dir: str | Path, runs_dir: str | Path | None = None) -> Progress:
    """Status, epoch m/n, per-epoch metrics and the log's last lines of a run the app launched."""
    run_dir = Path(run_dir)
    info = describe_run(run_dir, runs_dir)
    try:
        history = rundir.read_metrics(run_dir)
    except (OSError, ValueError, KeyError):
        history = []
    try:
        log_tail = "\n".join(_sidecar(run_dir, ".log").read_text(errors="replace").splitlines()[-8:])
    except OSError:
        log_tail = ""
    error = None
    if not info.pid and info.status not in (RunStatus.DONE.value, RunStatus.PARTIAL.value):
        errors = [line.removeprefix("error: ") for line in log_tail.splitlines() if line.startswith("error: ")]
        if errors:
            error = "; ".join(errors)
        elif info.status == RunStatus.FAILED.value:
            try:
                error = rundir.read_json(run_dir / rundir.SUMMARY_FILE).get("error")
            except (OSError, ValueError):
                pass
    return Progress(info, history, log_tail, error)


def launched_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories the app launched, newest first: what the Train page re-finds after a refresh."""
    side = Path(runs_dir) / APP_DIR
    records = []
    for path in side.glob("*.json"):
        try:
            started = float(rundir.read_json(path).get("started", 0))
        except (OSError, ValueError, TypeError):
            continue
        records.append((started, Path(runs_dir) / path.stem))
    return [run_dir for _, run_dir in sorted(records, key=lambda r: r[0], reverse=True)]


# -- the Runs page --------------------------------------------------------------------------


EVAL_FILES = ("test_confusion_matrix.png", "test_misclassified.png")


def ensure_evaluation(run_dir: str | Path, data_dirs: Sequence[str] = ()) -> dict[str, Path]:
    """The run's confusion matrix and misclassified grid, computed with `evaluate_run` when absent."""
    run_dir = Path(run_dir)
    paths = {name: run_dir / "eval" / name for name in EVAL_FILES}
    if not paths["test_confusion_matrix.png"].exists():
        from mlp_lab.evaluation import evaluate_run

        evaluate_run(run_dir, "test", data_dirs)
    return {name: path for name, path in paths.items() if path.exists()}


@dataclass
class Study:
    """A study's report as the app shows it: its markdown (without image links) and plots."""

    name: str
    directory: Path
    markdown: str
    plots: list[Path]


def list_studies(runs_dir: str | Path) -> list[Study]:
    """Every study with a report under `runs_dir` (``<runs>/<study>/report.md``)."""
    studies = []
    for report in sorted(Path(runs_dir).glob("*/report.md")):
        text = report.read_text(encoding="utf-8", errors="replace")
        # Streamlit cannot follow the report's relative image links: the plots are shown as images.
        markdown = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("!["))
        studies.append(Study(report.parent.name, report.parent, markdown, sorted(report.parent.glob("*.png"))))
    return studies
