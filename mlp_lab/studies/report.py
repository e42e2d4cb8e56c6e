"""Study reports rebuilt from run directories alone: tables, paired confidence intervals, plots.

For each arm: test accuracy and loss (mean ± std over seeds), best epoch, epochs run, parameter
count, wall time. Against the reference arm: the paired difference in test accuracy over the
seeds both completed, its 95% t-interval, and a verdict. Writes report.md, report.csv,
report.json and PNG plots into the study's output directory.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlp_lab.config.plugins import METRIC_PLUGINS, MetricPlugin
from mlp_lab.core.errors import ConfigError
from mlp_lab.inspect.plots import epoch_axis, lr_axis, outside_legend
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import Study, load_study, plan
from mlp_lab.studies.provenance import StudyFacts, study_facts

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    """Arm minus reference over shared seeds: mean, t-interval and a verdict."""

    n: int
    mean: float | None
    low: float | None
    high: float | None
    verdict: str


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided t confidence interval for the mean; None for fewer than two values."""
    if len(values) < 2:
        return None
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + confidence / 2, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr))
    return float(arr.mean() - half), float(arr.mean() + half)


def paired_difference(arm: dict[int, float], reference: dict[int, float]) -> PairedDifference:
    """Difference arm - reference over the seeds both have; verdict helps / hurts / no clear effect."""
    seeds = sorted(set(arm) & set(reference))
    diffs = [arm[s] - reference[s] for s in seeds]
    if not diffs:
        return PairedDifference(0, None, None, None, "no shared seeds")
    mean = float(np.mean(diffs))
    interval = t_interval(diffs)
    if interval is None:
        return PairedDifference(1, mean, None, None, "one seed: no interval can be given")
    low, high = interval
    verdict = "helps" if low > 0 else "hurts" if high < 0 else "no clear effect"
    return PairedDifference(len(diffs), mean, low, high, verdict)


def collect(study: Study, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Read every planned run directory; the numbers a report shows, per arm and per seed. A run
    whose summary.json or metrics.csv is damaged counts as missing (compare trains it again),
    each said in one line to `warn`."""
    arms: dict[str, Any] = {}
    # The planned runs, as `ablation.study_runs` gives track, register and list; read here once,
    # with the damage said, rather than through its status reads and then again.
    for spec in plan(study):
        arm = arms.setdefault(
            spec.arm,
            {
                "runs": {},
                "missing": [],
                "failed": {},
                "history": {},
                "changes": study.arm(spec.arm).changes,
                "run_dirs": {},
            },
        )
        summary_path = spec.run_dir / rundir.SUMMARY_FILE
        if not summary_path.exists() and not summary_path.is_symlink():  # a dangling link is damage: warned
            arm["missing"].append(spec.seed)
            continue
        try:
            summary = rundir.read_summary(spec.run_dir)
            history = rundir.read_metrics(spec.run_dir) if summary["status"] == "completed" else []
        except (rundir.UnreadableFile, FileNotFoundError) as exc:
            arm["missing"].append(spec.seed)
            if warn is not None:
                what = str(exc) if isinstance(exc, rundir.UnreadableFile) else f"{exc.filename}: missing"
                warn(f"warning: {what}; counted as not finished (mlp-lab compare {study.name} trains it again)")
            continue
        arm["run_dirs"][spec.seed] = spec.run_dir
        if summary.get("status") != "completed":
            arm["failed"][spec.seed] = summary.get("error", summary.get("status"))
            continue
        arm["runs"][spec.seed] = summary
        arm["history"][spec.seed] = history
    return arms


def facts(study: Study, arms: dict[str, Any]) -> StudyFacts:
    """What ran (see `provenance`): the runs' recorded configs against the study file's own, so a
    --set given now or at an earlier `compare` shows either way."""
    file_study, unchecked = study, ()
    if study.overrides:
        try:
            file_study = load_study(study.path, study.seeds)
        except ConfigError:
            # Not a study file (a search's confirmation) or valid only with the --set: compare
            # the runs with what was asked now, and say the --set as given.
            unchecked = study.overrides
    file_configs = {arm.name: arm.config for arm in file_study.arms}
    runs = {name: data["run_dirs"] for name, data in arms.items()}
    return study_facts(study.path, file_configs, runs, unchecked)


def plugin_keys(plugin: MetricPlugin) -> dict[str, str]:
    """A metric plug-in's columns in a report's rows: its mean and std over seeds, and its paired
    difference from the reference with the interval's ends."""
    return {
        "mean": f"{plugin.row_key}_mean",
        "std": f"{plugin.row_key}_std",
        "diff": f"{plugin.name}_diff",
        "low": f"{plugin.name}_ci_low",
        "high": f"{plugin.name}_ci_high",
    }


def plugin_columns(study: Study, arms: dict[str, Any], arm: str) -> dict[str, Any]:
    """One arm's plug-in columns, for every registered plug-in (None where its runs lack the
    metric): runs made with `output.<plug-in>` carry its score beside the test's."""
    columns: dict[str, Any] = {}
    for plugin in METRIC_PLUGINS.values():
        keys = plugin_keys(plugin)
        runs = arms[arm]["runs"]
        mean, std = mean_std([r[plugin.metric] for r in runs.values() if plugin.metric in r])
        columns.update(
            {keys["mean"]: mean, keys["std"]: std, keys["diff"]: None, keys["low"]: None, keys["high"]: None}
        )
        reference = {s: r[plugin.metric] for s, r in arms[study.reference]["runs"].items() if plugin.metric in r}
        if reference and arm != study.reference:
            diff = paired_difference({s: r[plugin.metric] for s, r in runs.items()}, reference)
            columns.update({keys["diff"]: diff.mean, keys["low"]: diff.low, keys["high"]: diff.high})
    return columns


def build_rows(study: Study, arms: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm: aggregates over seeds and the paired comparison with the reference."""
    reference = {s: r["test/acc"] for s, r in arms[study.reference]["runs"].items()}
    rows = []
    for arm in study.arms:
        data = arms[arm.name]
        runs = list(data["runs"].values())
        acc_mean, acc_std = mean_std([r["test/acc"] for r in runs])
        loss_mean, loss_std = mean_std([r["test/loss"] for r in runs])
        row = {
            "arm": arm.name,
            "changes": ", ".join(f"{k}={v}" for k, v in arm.changes.items()) or "(base)",
            "seeds": len(runs),
            "test_acc_mean": acc_mean,
            "test_acc_std": acc_std,
            "test_loss_mean": loss_mean,
            "test_loss_std": loss_std,
            **plugin_columns(study, arms, arm.name),
            "best_epoch_mean": mean_std([r["best_epoch"] for r in runs])[0],
            "epochs_run_mean": mean_std([r["epochs_run"] for r in runs])[0],
            "num_parameters": runs[0]["num_parameters"] if runs else None,
            "wall_time_s_mean": mean_std([r["wall_time_s"] for r in runs])[0],
            "failed_seeds": sorted(data["failed"]),
            "missing_seeds": sorted(data["missing"]),
        }
        if arm.name != study.reference:
            diff = paired_difference({s: r["test/acc"] for s, r in data["runs"].items()}, reference)
            row.update(
                {
                    "diff_vs_reference": diff.mean,
                    "ci_low": diff.low,
                    "ci_high": diff.high,
                    "paired_seeds": diff.n,
                    "verdict": diff.verdict,
                }
            )
        else:
            row.update(
                {
                    "diff_vs_reference": None,
                    "ci_low": None,
                    "ci_high": None,
                    "paired_seeds": None,
                    "verdict": "reference",
                }
            )
        rows.append(row)
    return rows


def _or_dash(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"


def epochs_text(value: float | None) -> str:
    """Epochs as a count: `6`, or `6.7` for a mean over seeds that ran different lengths."""
    if value is None:
        return "–"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def unrun_seeds(arm_missing: list[int], ran: StudyFacts) -> list[int]:
    """Seeds an arm lacks that other arms ran: the gaps worth naming (seeds no arm ran are one line)."""
    return [s for s in arm_missing if s in ran.seeds]


def _markdown(study: Study, rows: list[dict[str, Any]], plots: dict[str, str], ran: StudyFacts) -> str:
    lines = [f"# Study: {study.name}", ""]
    lines += [f"- {line}" for line in ran.lines()] + [""]
    lines += ran.code_lines()
    if study.description:
        lines += [study.description, ""]
    planned = [s for s in study.seeds if s not in ran.seeds]
    lines += [
        f"Factor: `{', '.join(study.factor)}` · reference arm: `{study.reference}` · "
        f"seeds with runs: {', '.join(map(str, ran.seeds)) or 'none'} · "
        f"dataset: {', '.join(ran.datasets) or study.arms[0].config.data.name}",
        "",
        *(
            [f"No runs yet for seeds {', '.join(map(str, planned))}: `mlp-lab compare {study.name}` runs them.", ""]
            if planned
            else []
        ),
        "## Arms",
        "",
        "| arm | changes | seeds | test acc % (mean ± std) | test loss | best epoch | epochs run | parameters | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    # The plug-in metrics these runs have, each a column beside test accuracy.
    shown = [p for p in METRIC_PLUGINS.values() if any(r[plugin_keys(p)["mean"]] is not None for r in rows)]
    for plugin in shown:
        lines[-2] = lines[-2].replace(" | test loss |", f" | {plugin.label} | test loss |")
        lines[-1] += " --- |"
    for r in rows:
        std = f" ± {_pct(r['test_acc_std'])}" if r["test_acc_std"] is not None else ""
        loss_std = f" ± {r['test_loss_std']:.4f}" if r["test_loss_std"] is not None else ""
        loss = f"{r['test_loss_mean']:.4f}{loss_std}" if r["test_loss_mean"] is not None else "–"
        extra = ""
        for plugin in shown:
            keys = plugin_keys(plugin)
            extra_std = f" ± {_pct(r[keys['std']])}" if r[keys["std"]] is not None else ""
            extra += f" {_pct(r[keys['mean']])}{extra_std} |"
        lines.append(
            f"| {r['arm']} | `{r['changes']}` | {r['seeds']} | {_pct(r['test_acc_mean'])}{std} |{extra} {loss} | "
            f"{epochs_text(r['best_epoch_mean'])} | {epochs_text(r['epochs_run_mean'])} | "
            f"{_or_dash(r['num_parameters'], ',')} | {_or_dash(r['wall_time_s_mean'], '.1f')} |"
        )
    lines += [
        "",
        f"## Against the reference (`{study.reference}`)",
        "",
        f"Paired difference in test accuracy (arm − reference, percentage points) over the seeds both "
        f"completed, with its {int(CONFIDENCE * 100)}% t-interval. *helps* / *hurts*: the interval lies "
        f"above / below zero; otherwise *no clear effect*.",
        "",
        "| arm | seeds | difference (pp) | 95% CI (pp) | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["arm"] == study.reference:
            continue
        ci = f"[{_pct(r['ci_low'], True)}, {_pct(r['ci_high'], True)}]" if r["ci_low"] is not None else "–"
        lines.append(
            f"| {r['arm']} | {r['paired_seeds']} | {_pct(r['diff_vs_reference'], True)} | {ci} | **{r['verdict']}** |"
        )
    for plugin in METRIC_PLUGINS.values():
        keys = plugin_keys(plugin)
        if not any(r[keys["diff"]] is not None for r in rows):
            continue
        lines += ["", plugin.description, "", "| arm | difference (pp) | 95% CI (pp) |", "| --- | --- | --- |"]
        for r in rows:
            if r[keys["diff"]] is not None:
                low, high = r[keys["low"]], r[keys["high"]]
                ci = f"[{_pct(low, True)}, {_pct(high, True)}]" if low is not None else "–"
                lines.append(f"| {r['arm']} | {_pct(r[keys['diff']], True)} | {ci} |")
    problems = [(r["arm"], "failed", r["failed_seeds"]) for r in rows if r["failed_seeds"]]
    problems += [
        (r["arm"], "not run yet", unrun_seeds(r["missing_seeds"], ran))
        for r in rows
        if unrun_seeds(r["missing_seeds"], ran)
    ]
    if problems:
        lines += ["", "## Incomplete", ""]
        lines += [f"- `{arm}`: seeds {', '.join(map(str, seeds))} {what}" for arm, what, seeds in problems]
    if plots:
        lines += ["", "## Plots", ""]
        for title, name in plots.items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    lines += [
        "",
        f"Rebuild with `mlp-lab report {study.name}`; curves in TensorBoard: "
        f"`tensorboard --logdir {study.output_dir}`.",
        "",
    ]
    return "\n".join(lines)


def _curve(
    histories: dict[int, list[dict[str, float]]], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean, min and max over seeds of one metric (seeds may have run different lengths)."""
    longest = max(len(h) for h in histories.values())
    table = np.full((len(histories), longest), np.nan)
    for i, history in enumerate(histories.values()):
        table[i, : len(history)] = [row[key] for row in history]
    # Every column holds at least the longest run's value, so the nan-reductions are well defined.
    return np.arange(1, longest + 1), np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def _shown(study: Study, arms: dict[str, Any]) -> tuple[list[str], dict[str, Any], list[int], str]:
    """The arms with curves, a color each, the seeds they ran and how a title names those seeds."""
    import matplotlib.pyplot as plt

    names = [a.name for a in study.arms if arms[a.name]["history"]]
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    seeds = sorted({s for name in names for s in arms[name]["history"]})
    shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    return names, colors, seeds, shown


def lr_figure(study: Study, arms: dict[str, Any]) -> Any:
    """The learning rate per epoch, one line per arm (mean over seeds): on a log axis when the
    rates span a decade or more, so SGD's 0.05 does not flatten Adam's cosine decay into the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, colors, _, shown = _shown(study, arms)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rates = []
    for name in names:
        x, mean, _, _ = _curve(arms[name]["history"], "lr")
        ax.plot(x, mean, color=colors[name], label=name, marker=".")
        rates.extend(mean)
    scale = lr_axis(ax, rates)
    ax.set(
        ylabel=f"learning rate at the epoch's first step ({scale})",
        title=f"{study.name}: learning rate per epoch and arm, {shown}",
    )
    epoch_axis(ax)
    ax.grid(alpha=0.3, which="both" if scale == "log scale" else "major")
    outside_legend(fig, ax, "arm")
    return fig


def make_plots(study: Study, arms: dict[str, Any]) -> dict[str, str]:
    """Write the PNG plots next to the report; returns {title: file name}. Every figure names its
    study and the seeds it shows (each arm is a line or a panel), epochs are whole numbers, legends
    sit outside the data, and the LR axis is logarithmic when the arms' rates span decades."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = study.output_dir
    names, colors, seeds, shown = _shown(study, arms)
    if not names:
        return {}
    band_note = "" if len(seeds) == 1 else " (line: mean over seeds; band: min–max)"
    plots: dict[str, str] = {}

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "val/loss", "validation loss"), (axes[1], "val/acc", "validation accuracy")):
        for name in names:
            x, mean, low, high = _curve(arms[name]["history"], key)
            ax.plot(x, mean, color=colors[name], label=name)
            ax.plot(x[-1], mean[-1], "o", color=colors[name])  # where the arm stopped: arms overlap until then
            ax.fill_between(x, low, high, color=colors[name], alpha=0.2)
        ax.set(ylabel=label, title=f"{label} per epoch")
        epoch_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{study.name}: validation curves per arm, {shown}{band_note}")
    outside_legend(fig, axes[1], "arm")  # lays the figure out: after the suptitle, so it makes room
    fig.savefig(out / "val_curves.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    plots["Validation loss and accuracy per epoch"] = "val_curves.png"

    cols = min(3, len(names))
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.5 * rows_n), squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        for key, style in (("train/loss", "--"), ("val/loss", "-")):
            x, mean, low, high = _curve(arms[name]["history"], key)
            ax.plot(x, mean, style, color=colors[name], label=key)
            ax.fill_between(x, low, high, color=colors[name], alpha=0.15)
        ax.set(title=f"arm {name}", ylabel="loss")
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"{study.name}: train vs validation loss per arm, {shown} (the gap is overfitting)")
    fig.tight_layout()
    fig.savefig(out / "overfitting.png", dpi=110)
    plt.close(fig)
    plots["Train vs validation loss per arm"] = "overfitting.png"

    fig = lr_figure(study, arms)
    fig.savefig(out / "lr.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    plots["Learning rate per epoch"] = "lr.png"

    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names) + 2), 4))
    for i, name in enumerate(names):
        accs = [r["test/acc"] * 100 for r in arms[name]["runs"].values()]
        mean = float(np.mean(accs))
        interval = t_interval(accs)
        if interval is not None:
            ax.errorbar(
                i,
                mean,
                yerr=[[mean - interval[0]], [interval[1] - mean]],
                fmt="o",
                color=colors[name],
                capsize=6,
                markersize=8,
            )
        else:
            ax.plot(i, mean, "o", color=colors[name], markersize=8)
        ax.scatter([i + 0.12] * len(accs), accs, color=colors[name], s=12, alpha=0.6)
    ax.set_xticks(range(len(names)), names, rotation=20)
    what = "mean, 95% CI; dots: seeds" if len(seeds) > 1 else "one seed: no interval"
    ax.set(xlabel="arm", ylabel="test accuracy (%)", title=f"{study.name}: test accuracy per arm, {shown} ({what})")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "test_acc.png", dpi=110)
    plt.close(fig)
    plots["Test accuracy per arm"] = "test_acc.png"
    return plots


def build_report(study: Study, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rebuild report.md, report.csv, report.json and the plots from the run directories (a
    damaged run's files said to `warn`, see `collect`)."""
    arms = collect(study, warn)
    rows = build_rows(study, arms)
    study.output_dir.mkdir(parents=True, exist_ok=True)
    ran = facts(study, arms)
    plots = make_plots(study, arms)
    out = study.output_dir
    rundir.atomic_write_text(out / "report.md", _markdown(study, rows, plots, ran))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()})
    rundir.atomic_write_text(out / "report.csv", buffer.getvalue())
    report = {
        "experiment": study.name,
        "factor": study.factor,
        "reference": study.reference,
        "seeds": study.seeds,
        "overrides": list(study.overrides),
        "confidence": CONFIDENCE,
        "arms": rows,
        "runs": {name: {str(s): r for s, r in data["runs"].items()} for name, data in arms.items()},
        "plots": plots,
        "ran": dataclasses.asdict(ran),
    }
    rundir.write_json(out / "report.json", report)
    return report
