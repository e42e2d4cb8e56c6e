"""What the overview says about each study, whatever the page's format: the rows of the summary
table ("change -> effect on test accuracy"), each study's arm table, its one-line finding and
its notes, and the figure of every effect. `overview` writes these as index.md and index.html.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlp_lab.config.datasets import display_name
from mlp_lab.execution.executors import estimated_cost
from mlp_lab.studies.ablation import Study
from mlp_lab.studies.provenance import StudyFacts, value_text
from mlp_lab.studies.report import CONFIDENCE, epochs_text, unrun_seeds


@dataclass(frozen=True)
class StudyResult:
    """One study's rebuilt report, as the overview shows it."""

    study: Study
    rows: list[dict[str, Any]]
    ran: StudyFacts  # what the runs really were (seeds, --set, base, machine), from their directories

    @property
    def reference_row(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["arm"] == self.study.reference)


def _pp(value: float | None, signed: bool = True) -> str:
    """A fraction as percentage points; a real minus sign, so columns read well."""
    if value is None:
        return "–"
    text = f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"
    return text.replace("-", "−")


def _acc(row: dict[str, Any]) -> str:
    if row["test_acc_mean"] is None:
        return "–"
    std = f" ± {row['test_acc_std'] * 100:.2f}" if row["test_acc_std"] is not None else ""
    return f"{row['test_acc_mean'] * 100:.2f}{std}"


def _effect(row: dict[str, Any]) -> str:
    if row["diff_vs_reference"] is None:
        return "–"
    if row["ci_low"] is None:
        return _pp(row["diff_vs_reference"])
    return f"{_pp(row['diff_vs_reference'])} [{_pp(row['ci_low'])}, {_pp(row['ci_high'])}]"


def _time_ratio(row: dict[str, Any], reference: dict[str, Any]) -> str:
    """The arm's mean wall time per run against the reference's: what the change costs."""
    arm_s, ref_s = row["wall_time_s_mean"], reference["wall_time_s_mean"]
    if arm_s is None or not ref_s:
        return "–"
    return f"×{arm_s / ref_s:.2f} ({arm_s:.0f} s vs {ref_s:.0f} s)"


def _compute(study: StudyResult, row: dict[str, Any]) -> float | None:
    """Multiply-accumulates per training example x epochs actually run: a cost that, unlike wall
    time, does not move with the machine's load (element-wise layers and penalties are not counted)."""
    if row["epochs_run_mean"] is None:
        return None
    config = study.study.arm(row["arm"]).config
    return estimated_cost(config) / config.train.epochs * row["epochs_run_mean"]


def _compute_ratio(study: StudyResult, row: dict[str, Any]) -> str:
    arm, reference = _compute(study, row), _compute(study, study.reference_row)
    return "–" if arm is None or not reference else f"×{arm / reference:.2f}"


def _change(study: StudyResult, arm: str) -> str:
    """What an arm changes, its keys' shared section said once: `train.optimizer: name=sgd, lr=0.05`."""
    changes = study.study.arm(arm).changes
    if not changes:
        return f"{arm} (the base config)"
    keys = [k.split(".") for k in changes]
    common: list[str] = []
    for parts in zip(*(k[:-1] for k in keys)):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    if len(changes) == 1 or not common:
        return f"{arm} ({', '.join(f'{k}={v}' for k, v in changes.items())})"
    rest = ", ".join(".".join(k[len(common) :]) + f"={v}" for k, v in zip(keys, changes.values()))
    return f"{arm} ({'.'.join(common)}: {rest})"


def summary_rows(studies: Sequence[StudyResult]) -> list[dict[str, str]]:
    """One row per non-reference arm of every study: the course's findings in one table."""
    rows = []
    for study in studies:
        reference = study.reference_row
        for row in study.rows:
            if row["arm"] == study.study.reference:
                continue
            rows.append(
                {
                    "study": study.study.name,
                    "change": _change(study, row["arm"]),
                    "reference": f"{study.study.reference} ({_acc(reference)} %)",
                    "test_acc": _acc(row),
                    "effect": _effect(row),
                    "verdict": row["verdict"],
                    "time": _time_ratio(row, reference),
                    "compute": _compute_ratio(study, row),
                }
            )
    return rows


def effects_figure(studies: Sequence[StudyResult], path: Path) -> bool:
    """Every arm's paired difference with its interval, grouped by study; False if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [
        (s.study.name, r)
        for s in studies
        for r in s.rows
        if r["arm"] != s.study.reference and r["diff_vs_reference"] is not None
    ]
    if not entries:
        return False
    colors = {"helps": "tab:green", "hurts": "tab:red"}
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(entries) + 1.4))
    for y, (_study, row) in enumerate(entries):
        mean = row["diff_vs_reference"] * 100
        color = colors.get(row["verdict"], "tab:gray")
        if row["ci_low"] is not None:
            ax.errorbar(
                mean,
                y,
                xerr=[[mean - row["ci_low"] * 100], [row["ci_high"] * 100 - mean]],
                fmt="o",
                color=color,
                capsize=3,
            )
        else:
            ax.plot(mean, y, "o", color=color, fillstyle="none")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(entries)), [f"{study}: {row['arm']}" for study, row in entries])
    ax.invert_yaxis()  # first study on top, as in the table
    interval = (
        f"{int(CONFIDENCE * 100)}% CI"
        if any(row["ci_low"] is not None for _, row in entries)
        else "one seed: no interval"
    )
    ax.set(
        xlabel=f"effect on test accuracy vs the study's reference (points, {interval})",
        title="Every change, every study (green: helps, red: hurts, grey: no clear effect)",
    )
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def study_table(study: StudyResult) -> tuple[list[str], list[list[str]]]:
    head = [
        "arm",
        "changes",
        "seeds",
        "test acc % (mean ± std)",
        f"vs {study.study.reference} (pp) [{int(CONFIDENCE * 100)}% CI]",
        "verdict",
        "epochs run",
        "wall s / run",
    ]
    body = []
    for r in study.rows:
        fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
        body.append(
            [
                r["arm"],
                r["changes"],
                str(r["seeds"]),
                _acc(r),
                _effect(r),
                r["verdict"],
                epochs_text(r["epochs_run_mean"]),
                fmt(r["wall_time_s_mean"], ".1f"),
            ]
        )
    return head, body


def study_meta(study: StudyResult) -> str:
    exp = study.study
    datasets = study.ran.datasets or [exp.arms[0].config.data.name]
    return (
        f"{', '.join(map(display_name, datasets))} · factor `{', '.join(exp.factor)}` · reference `{exp.reference}` · "
        f"seeds with runs: {', '.join(map(str, study.ran.seeds))}"
    )


def what_ran(study: StudyResult) -> str:
    """One line per study for the top of the page: its seeds with runs, base and every override."""
    ran = study.ran
    seeds = f"seed{'s' if len(ran.seeds) > 1 else ''} {', '.join(map(str, ran.seeds))}"
    parts = [seeds, f"base `{ran.base}`"]
    if ran.file_overrides:
        parts.append("study overrides " + ", ".join(f"`{k}={value_text(v)}`" for k, v in ran.file_overrides.items()))
    if ran.set_keys:
        parts.append("--set " + ", ".join(f"`{k}={' / '.join(map(value_text, v))}`" for k, v in ran.set_keys.items()))
    # A user's code and data, by name and content hash: the page says which versions its numbers came from.
    entries = [entry for entries in ran.code.values() for entry in entries]
    models = sorted({f"{e['model']} sha256 {e['code_sha256']}" for e in entries if e.get("model")})
    sources = sorted({e["data"] for e in entries if e.get("data")})
    if models:
        parts.append("code " + ", ".join(models))
    if sources:
        parts.append("data " + ", ".join(sources))
    if ran.conflicts:
        parts.append("**mixed configs** in " + ", ".join(f"`{arm}`" for arm in ran.conflicts))
    return f"{study.study.name}: " + " · ".join(parts)


def finding(study: StudyResult) -> str:
    """The study's verdicts in one sentence: which arms help, which hurt, which show no clear effect."""
    groups: dict[str, list[str]] = {}
    for r in study.rows:
        if r["arm"] != study.study.reference:
            groups.setdefault(r["verdict"], []).append(f"{r['arm']} ({_pp(r['diff_vs_reference'])} pp)")
    order = [("helps", "Helps"), ("hurts", "Hurts"), ("no clear effect", "No clear effect")]
    parts = [f"{label}: {', '.join(groups.pop(key))}." for key, label in order if key in groups]
    parts += [f"{key[0].upper() + key[1:]}: {', '.join(arms)}." for key, arms in groups.items()]
    return f"Against {study.study.reference}: " + " ".join(parts)


def incomplete_notes(study: StudyResult) -> list[str]:
    """Seeds an arm lacks that other arms ran, and failed runs; a seed no arm ran is said once."""
    notes = []
    planned = [s for s in study.study.seeds if s not in study.ran.seeds]
    if planned:
        notes.append(
            f"the study file plans {len(study.study.seeds)} seeds; {len(planned)} "
            f"{'has' if len(planned) == 1 else 'have'} no runs "
            f"(mlp-lab compare {study.study.name} runs them)"
        )
    notes += [
        f"{r['arm']}: seeds {', '.join(map(str, unrun_seeds(r['missing_seeds'], study.ran)))} not run yet"
        for r in study.rows
        if unrun_seeds(r["missing_seeds"], study.ran)
    ]
    return notes + [
        f"{r['arm']}: seeds {', '.join(map(str, r['failed_seeds']))} failed" for r in study.rows if r["failed_seeds"]
    ]


SUMMARY_HEAD = [
    "study",
    "change (arm)",
    "reference (test acc %)",
    "test acc %",
    "effect (pp) [95% CI]",
    "verdict",
    "wall time per run vs reference",
    "compute vs reference",
]


SUMMARY_KEYS = ["study", "change", "reference", "test_acc", "effect", "verdict", "time", "compute"]


INTRO = (
    f"Each study changes one factor at a time against a reference arm, on the same train/val split "
    f"and the same seeds. *effect*: the paired difference in test accuracy (arm − reference, "
    f"percentage points) over the seeds both ran, with its {int(CONFIDENCE * 100)}% t-interval; "
    f"*helps* / *hurts* when the interval lies above / below zero, otherwise *no clear effect*. "
    f"*wall time*: mean wall time of one run, arm against reference (it moves with the machine's "
    f"load); *compute*: multiply-accumulates per example x epochs run, arm against reference."
)
