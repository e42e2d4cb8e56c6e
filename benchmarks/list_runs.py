"""How long listing the runs takes as a runs directory grows: 100, 1,000 and 3,000 run directories.

Usage: python benchmarks/list_runs.py [--run-dir RUN_DIR] [--sizes 100 1000 3000] [--repeats 5] [--json FILE]

The runs are hard-linked copies of one real run (RUN_DIR, else a 1-epoch FashionMNIST run trained
here first), laid out as a search lays out its trials (``<runs>/search-K/trial-N`` beside
``.trial-N.lock``), so no copy is trained and the files are the real ones. For each size it times
the app's two listings, ``finished_runs`` (the Draw page's model picker) and ``list_runs`` (the Runs
page), median of `--repeats`: cold, with no runs index (``<runs>/.index.json`` removed before each
call), and warm, with the index the previous call left. Code that keeps no index has cold = warm.
Run it with PYTHONPATH pointing at the checkout to measure; it prints the load average beside the
figures, since other processes on the machine change them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlp_lab

try:
    from mlp_lab.app.models import finished_runs
    from mlp_lab.app.runs import list_runs
except ImportError:  # code from before the app was split into one module per job
    from mlp_lab.app.logic import finished_runs, list_runs

try:
    from mlp_lab.runs.runindex import INDEX_FILE
except ImportError:  # code from before the runs index: every listing reads every run directory
    INDEX_FILE = None

REPO = Path(__file__).resolve().parents[1]
PER_GROUP = 100  # trials per search directory


def train_source(workdir: Path) -> Path:
    """One small real run (1 epoch of FashionMNIST, one hidden layer of 32) through the CLI."""
    command = [
        sys.executable,
        "-m",
        "mlp_lab",
        "run",
        str(REPO / "configs" / "baseline.yaml"),
        "--set",
        "train.epochs=1",
        "--set",
        "model.hidden_sizes=[32]",
        "--set",
        f"output.dir={workdir}",
        "--set",
        f"data.root={workdir / 'data'}",
        "--set",
        "name=source",
        "--threads",
        "1",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return workdir / "source"


def link_copy(source: Path, target: Path) -> None:
    """`source`'s files hard-linked into a new directory `target`, and its lock file beside it."""
    for root, _, files in os.walk(source):
        relative = Path(root).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(Path(root) / name, target / relative / name)
    lock = source.parent / f".{source.name}.lock"
    if lock.exists():
        os.link(lock, target.parent / f".{target.name}.lock")


def grow(source: Path, runs: Path, size: int) -> None:
    """Add copies until `runs` holds `size` run directories."""
    for n in range(size):
        target = runs / f"search-{n // PER_GROUP:02d}" / f"trial-{n}"
        if not target.exists():
            link_copy(source, target)


def timed(call, runs: Path, cold: bool, repeats: int) -> float:
    """Median seconds of `call(runs)`; cold removes the runs index before each call."""
    seconds = []
    for _ in range(repeats):
        if cold and INDEX_FILE:
            (runs / INDEX_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        call(runs)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a finished run to copy (default: train a 1-epoch one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="list-runs-") as tmp:
        workdir = Path(tmp)
        source = args.run_dir.resolve() if args.run_dir else train_source(workdir / "source-runs")
        runs = workdir / "runs"
        rows = []
        print(
            f"mlp_lab from {Path(mlp_lab.__file__).parent}; runs index: {INDEX_FILE or 'none'}; "
            f"{os.cpu_count()} CPUs; median of {args.repeats}"
        )
        print(f"{'runs':>6} {'finished_runs cold':>19} {'warm':>8} {'list_runs cold':>15} {'warm':>8}  load (1 min)")
        for size in sorted(args.sizes):
            grow(source, runs, size)
            found = len(list_runs(runs))
            assert found == size, f"listed {found} of {size} runs"
            row = {"runs": size}
            for name, call in (("finished_runs", finished_runs), ("list_runs", list_runs)):
                row[f"{name} cold s"] = timed(call, runs, True, args.repeats)
                call(runs)  # leaves the index for the warm calls
                row[f"{name} warm s"] = timed(call, runs, False, args.repeats)
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(
                f"{size:>6} {row['finished_runs cold s']:>18.3f}s {row['finished_runs warm s']:>7.3f}s "
                f"{row['list_runs cold s']:>14.3f}s {row['list_runs warm s']:>7.3f}s  {row['load']:.2f}"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "code": str(Path(mlp_lab.__file__).parent),
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "repeats": args.repeats,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
