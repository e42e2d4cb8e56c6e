"""A search's report, rebuilt from its study alone: search.md, search.csv, search.json, Optuna's
plots, and best.yaml (the best trial's config, ready for ``mlp-lab run``).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import config_to_dict
from mlp_lab.runs import rundir
from mlp_lab.search.spec import BEST_CONFIG_FILE, TRIAL_FILE, Search


def trial_rows(search: Search, study) -> list[dict[str, Any]]:
    """One row per trial: number, state, metric, params, epochs run, seconds, error."""
    rows = []
    by_key = {p.key: p for p in search.params}
    for t in study.get_trials(deepcopy=False):
        row = {
            "trial": t.number,
            "state": t.state.name.lower(),
            search.metric: t.value
            if t.value is not None
            else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None),
        }
        for key, param in by_key.items():
            row[key] = param.decode(t.params[key]) if key in t.params else None
        planned = (t.user_attrs.get("config") or {}).get("train", {}).get("epochs")
        row.update(
            {
                "epochs_run": t.user_attrs.get("epochs_run", len(t.intermediate_values)),
                "epochs_planned": planned,
                "seconds": t.user_attrs.get("seconds"),
                "error": t.user_attrs.get("error"),
            }
        )
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plots(study, out: Path) -> tuple[dict[str, str], list[str]]:
    """Optuna's matplotlib plots as PNGs; a plot that cannot be drawn yet is listed with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    made, skipped = {}, []
    for title, name, draw in (
        ("Optimization history", "history.png", vis.plot_optimization_history),
        ("Parameter importances", "importances.png", vis.plot_param_importances),
        ("Parallel coordinates", "parallel.png", vis.plot_parallel_coordinate),
        ("Slice", "slice.png", vis.plot_slice),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                # One axis (or panel) per parameter: give each about an inch and a half.
                wide = 1.5 * len(study.best_trial.params) if name in ("parallel.png", "slice.png") else 8.0
                figure.set_size_inches(
                    max(8.0, wide, figure.get_size_inches()[0]), max(5.0, figure.get_size_inches()[1])
                )
                figure.tight_layout()
                figure.savefig(out / name, dpi=100)
            plt.close(figure)
            made[title] = name
        except Exception as exc:  # e.g. importances need two finished trials that differ
            plt.close("all")
            skipped.append(f"{title}: {type(exc).__name__}: {exc}".splitlines()[0])
    return made, skipped


def write_report(search: Search, study) -> dict[str, Any]:
    """search.md, search.csv, search.json, the plots and best.yaml, from the study alone."""
    from optuna.trial import TrialState

    out = search.output_dir
    rows = trial_rows(search, study)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = study.best_trial if complete else None
    if best is not None:
        config = validate_config({**best.user_attrs["config"], "name": f"{search.name}-best"}, "best trial")
        header = (
            f"# Run: mlp-lab run {out / BEST_CONFIG_FILE}   (confirm over seeds: mlp-lab search {search.name} --confirm)\n"
            f"# Best trial {best.number} of search {search.name}: {search.metric} {best.value:.4f} "
            f"(selected on validation: optimistic; the confirmation is the number to quote).\n"
        )
        rundir.atomic_write_text(
            out / BEST_CONFIG_FILE, header + yaml.safe_dump(config_to_dict(config), sort_keys=False)
        )
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail", "running")}
    epochs_run = sum(r["epochs_run"] or 0 for r in rows if r["state"] in ("complete", "pruned"))
    epochs_planned = sum(r["epochs_planned"] or 0 for r in rows if r["state"] in ("complete", "pruned"))
    plots, skipped = _plots(study, out) if complete else ({}, ["no complete trial yet"])
    report = {
        "search": search.name,
        "metric": search.metric,
        "direction": search.direction,
        "sampler": search.sampler,
        "pruner": search.pruner.name,
        "overrides": list(search.overrides),
        "counts": counts,
        "best": None
        if best is None
        else {
            "trial": best.number,
            "value": best.value,
            "params": {p.key: p.decode(best.params[p.key]) for p in search.params if p.key in best.params},
        },
        "epochs_run": epochs_run,
        "epochs_planned": epochs_planned,
        "seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
        "trials": rows,
        "plots": plots,
    }
    rundir.write_json(out / "search.json", report)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows)
    rundir.atomic_write_text(out / "search.csv", buffer.getvalue())
    rundir.atomic_write_text(out / "search.md", _markdown(search, report, skipped))
    return report


def _markdown(search: Search, report: dict[str, Any], skipped: list[str]) -> str:
    lines = [f"# Search: {search.name}", ""]
    if search.description:
        lines += [search.description, ""]
    c = report["counts"]
    lines += [
        f"Metric: `{search.metric}` ({search.direction}) · sampler: {search.sampler} · pruner: "
        f"{search.pruner.name} · trials: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
        + (f", {c['running']} unfinished" if c["running"] else ""),
        "",
    ]
    if search.overrides:
        lines += ["Every trial with " + ", ".join(f"`{o}`" for o in search.overrides) + " (--set).", ""]
    best = report["best"]
    if best is not None:
        lines += [
            "## Best trial",
            "",
            f"Trial {best['trial']}: {search.metric} **{best['value']:.4f}** (`trial-{best['trial']}/`, "
            f"config in `{BEST_CONFIG_FILE}`).",
            "",
        ]
        lines += [f"- `{k}`: {v}" for k, v in best["params"].items()]
        lines += [
            "",
            "This validation score was selected as the best of many, so it is optimistic. The number to "
            f"quote is the confirmation over seeds on the test split: `mlp-lab search {search.name} --confirm`.",
            "",
        ]
    if report["epochs_planned"]:
        saved = report["epochs_planned"] - report["epochs_run"]
        lines += [
            f"Epochs: {report['epochs_run']} trained of {report['epochs_planned']} planned for the finished "
            f"trials; pruning (and early stopping) saved {saved} ({saved / report['epochs_planned']:.0%}). "
            f"Training time over all trials: {report['seconds']:.0f} s.",
            "",
        ]
    keys = [p.key for p in search.params]
    lines += [
        "## Trials",
        "",
        "| trial | state | " + search.metric + " | " + " | ".join(keys) + " | epochs | seconds | note |",
        "|" + " --- |" * (len(keys) + 6),
    ]
    for r in report["trials"]:
        lines.append(
            f"| {r['trial']} | {r['state']} | {_fmt(r[search.metric])} | "
            + " | ".join(_fmt(r[k]) for k in keys)
            + f" | {_fmt(r['epochs_run'])}/{_fmt(r['epochs_planned'])} | {_fmt(r['seconds'])} | "
            + f"{(r['error'] or '').replace('|', '/')} |"
        )
    if report["plots"]:
        lines += ["", "## Plots", ""]
        for title, name in report["plots"].items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    if skipped:
        lines += ["", "Plots not drawn: " + "; ".join(skipped)]
    lines += [
        "",
        f"Pruned runs keep their directory (`{TRIAL_FILE}` says `pruned`). Continue or extend with "
        f"`mlp-lab search {search.name} --trials N`.",
        "",
    ]
    return "\n".join(lines)
