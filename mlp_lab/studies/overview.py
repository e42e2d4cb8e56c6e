"""One report over every study: the course's findings on one page.

At the top, a summary table "change -> effect on test accuracy [95% interval], verdict, cost in
time" over every arm of every study (the plain-base ladder first) and a figure of those effects;
then one section per study: its question, its arms (mean ± std over seeds, paired difference with
the reference, verdict), its main figure and a link to its full report.md. Each study's report is
rebuilt from its run directories first, so the overview, like every report, needs nothing else;
it says what ran as those directories record it (seeds with runs, base, --set, machine), and the
studies without runs once, at the end.
Writes <output>/index.md and a self-contained <output>/index.html (figures embedded as data URIs,
so the page opens from disk without a server and can be handed in as one file).
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlp_lab.config.datasets import display_name
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.shipped import shipped_dir
from mlp_lab.execution.executors import estimated_cost
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import STUDIES_DIR, Study, load_study, plan
from mlp_lab.studies.provenance import StudyFacts, value_text
from mlp_lab.studies.report import CONFIDENCE, build_report, epochs_text, unrun_seeds

# The course's order: the plain-base ladder, the first lesson on MNIST, why CNNs beat MLPs, then the rest by name.
LEAD_STUDIES = ("ladder", "mnist_linear_vs_mlp", "mlp_vs_cnn", "mlp_vs_cnn_fashion", "permuted_pixels")
MAIN_FIGURE = "val_curves.png"  # per study: the curves show why the verdicts come out as they do
EFFECTS_FIGURE = "overview_effects.png"


@dataclass(frozen=True)
class StudyResult:
    """One study's rebuilt report, as the overview shows it."""

    study: Study
    rows: list[dict[str, Any]]
    ran: StudyFacts  # what the runs really were (seeds, --set, base, machine), from their directories

    @property
    def reference_row(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["arm"] == self.study.reference)


def study_names(studies_dir: str | Path = STUDIES_DIR) -> list[str]:
    """Every study file's name, in the course's order (LEAD_STUDIES first, then by name)."""
    names = sorted(p.stem for p in Path(studies_dir).glob("*.yaml"))
    return [n for n in LEAD_STUDIES if n in names] + [n for n in names if n not in LEAD_STUDIES]


def default_studies(studies_dir: str | Path = STUDIES_DIR) -> list[str | Path]:
    """The studies `suite` and `report --all` cover: the files in `studies_dir`, or, where it has
    none (the package installed, shipped studies run by name), the shipped ones, as paths so each
    is not announced as a fallback once more."""
    names = study_names(studies_dir)
    if names:
        return list(names)
    shipped = shipped_dir(STUDIES_DIR)
    return [shipped / f"{name}.yaml" for name in study_names(shipped)]


def load_studies(
    names: Sequence[str | Path] | None = None,
    seeds: Sequence[int] | None = None,
    studies_dir: str | Path = STUDIES_DIR,
    overrides: Sequence[str] = (),
) -> list[Study]:
    """Load the named studies (default: `default_studies(studies_dir)`), `overrides` (--set texts)
    applied to every arm of each; every file's errors reported together (a bad --set once)."""
    names = list(names) if names else default_studies(studies_dir)
    if not names:
        raise MLPLabError(f"{studies_dir}/: no study files, and no shipped ones")
    studies, errors = [], []
    for name in names:
        try:
            studies.append(load_study(name, seeds, studies_dir, overrides))
        except ConfigError as exc:
            errors.extend(e for e in exc.errors if e not in errors)
    if errors:
        raise ConfigError(errors)
    return studies


def has_runs(study: Study) -> bool:
    """Whether at least one of the study's runs has finished (completed or not)."""
    return any((spec.run_dir / rundir.SUMMARY_FILE).exists() for spec in plan(study))


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


def _effects_figure(studies: Sequence[StudyResult], path: Path) -> bool:
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


def _study_table(study: StudyResult) -> tuple[list[str], list[list[str]]]:
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


def _study_meta(study: StudyResult) -> str:
    exp = study.study
    datasets = study.ran.datasets or [exp.arms[0].config.data.dataset]
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


def _incomplete(study: StudyResult) -> list[str]:
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


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + [
        "| " + " | ".join(escape(c) for c in row) + " |" for row in body
    ]


def _relative(path: Path, start: Path) -> str:
    """A link from the overview's folder to a study's folder (they are siblings under runs/ by default)."""
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _markdown(studies: Sequence[StudyResult], skipped: Sequence[str], effects: bool, out: Path) -> str:
    lines = ["# Findings: every study", "", INTRO, "", "What ran (read from the run directories):", ""]
    lines += [f"- {what_ran(study)}" for study in studies]
    lines += ["", "## Summary: what each change does to test accuracy", ""]
    summary = summary_rows(studies)
    lines += _md_table(SUMMARY_HEAD, [[r[k] for k in SUMMARY_KEYS] for r in summary])
    if effects:
        lines += ["", f"![effects]({EFFECTS_FIGURE})"]
    for study in studies:
        exp = study.study
        lines += [
            "",
            f"## {exp.name}",
            "",
            _study_meta(study),
            "",
            *[f"- {line}" for line in study.ran.lines()],
            "",
            f"**Question.** {exp.description}",
            "",
            f"**Finding.** {finding(study)}",
            "",
        ]
        head, body = _study_table(study)
        lines += _md_table(head, [[f"`{c}`" if i == 1 else c for i, c in enumerate(row)] for row in body])
        notes = _incomplete(study)
        if notes:
            lines += [""] + [f"- {note}" for note in notes]
        folder = _relative(exp.output_dir, out)
        if (exp.output_dir / MAIN_FIGURE).exists():
            lines += ["", f"![{exp.name}: validation curves]({folder}/{MAIN_FIGURE})"]
        lines += ["", f"Full report: [{folder}/report.md]({folder}/report.md)"]
    if skipped:
        lines += ["", _not_run(skipped)]
    lines += ["", "Rebuild with `mlp-lab report --all`; run what is missing with `mlp-lab suite`.", ""]
    return "\n".join(lines)


def _not_run(skipped: Sequence[str]) -> str:
    """The studies without runs, said once at the end: the page is about what ran."""
    return f"Not run yet (no finished runs): {', '.join(skipped)}."


def _markup(line: str) -> str:
    """A facts line's markdown (backticks, **bold**) as HTML."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line))
    return re.sub(r"[*][*]([^*]+)[*][*]", r"<b>\1</b>", text)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.helps { color: #17692b; font-weight: bold; } .hurts { color: #a51d1d; font-weight: bold; }
.meta { color: #555; font-size: 0.9em; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 0.2em; } .note { color: #8a5a00; }
"""


def _html_table(
    head: list[str],
    body: list[list[str]],
    verdict_col: int,
    num_cols: set[int],
    code_col: int | None = None,
    html_col: int | None = None,
) -> str:
    """A table of escaped text; `html_col` holds ready-made markup (a link)."""
    cells = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in body:
        tds = []
        for i, cell in enumerate(row):
            text = cell if i == html_col else html.escape(cell)
            if i == code_col:
                text = f"<code>{text}</code>"
            css = ' class="num"' if i in num_cols else ""
            if i == verdict_col:
                css = f' class="{cell}"' if cell in ("helps", "hurts") else ""
            tds.append(f"<td{css}>{text}</td>")
        cells.append("<tr>" + "".join(tds) + "</tr>")
    return "<table>\n" + "\n".join(cells) + "\n</table>"


def _html(studies: Sequence[StudyResult], skipped: Sequence[str], effects_path: Path | None, out: Path) -> str:
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>mlp-lab: findings</title>'
        f"<style>{CSS}</style></head><body>",
        "<h1>Findings: every study</h1>",
        "<p>" + re.sub(r"[*]([^*]+)[*]", r"<em>\1</em>", html.escape(INTRO)) + "</p>",
        "<p>What ran (read from the run directories):</p>",
        "<ul>" + "".join(f"<li>{_markup(what_ran(study))}</li>" for study in studies) + "</ul>",
        "<h2>Summary: what each change does to test accuracy</h2>",
    ]
    summary = summary_rows(studies)
    body = [
        [f'<a href="#{html.escape(r["study"])}">{html.escape(r["study"])}</a>'] + [r[k] for k in SUMMARY_KEYS[1:]]
        for r in summary
    ]
    parts.append(_html_table(SUMMARY_HEAD, body, verdict_col=5, num_cols={3, 4, 7}, html_col=0))
    if effects_path is not None:
        parts.append(f'<p><img alt="effects of every change" src="{_data_uri(effects_path)}"></p>')
    for study in studies:
        exp = study.study
        meta = html.escape(_study_meta(study)).replace("`", "")
        parts += [
            f'<h2 id="{html.escape(exp.name)}">{html.escape(exp.name)}</h2>',
            f'<p class="meta">{meta}</p>',
            '<ul class="meta">' + "".join(f"<li>{_markup(line)}</li>" for line in study.ran.lines()) + "</ul>",
            f"<p><b>Question.</b> {html.escape(exp.description)}</p>",
            f"<p><b>Finding.</b> {html.escape(finding(study))}</p>",
        ]
        head, rows = _study_table(study)
        parts.append(_html_table(head, rows, verdict_col=5, num_cols={2, 3, 4, 6, 7}, code_col=1))
        notes = _incomplete(study)
        if notes:
            parts.append('<ul class="note">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        figure = exp.output_dir / MAIN_FIGURE
        if figure.exists():
            parts.append(f'<p><img alt="{html.escape(exp.name)}: validation curves" src="{_data_uri(figure)}"></p>')
        folder = html.escape(_relative(exp.output_dir, out))
        parts.append(
            f'<p>Full report: <a href="{folder}/report.md">{folder}/report.md</a> '
            f"(all plots in <code>{folder}/</code>)</p>"
        )
    if skipped:
        parts.append(f'<p class="note">{html.escape(_not_run(skipped))}</p>')
    parts.append('<p class="meta">Rebuilt from the run directories with <code>mlp-lab report --all</code>.</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_overview(studies: Sequence[Study], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Rebuild every study's report that has runs, then write index.md and index.html over them.

    `out_dir` defaults to the studies' common output directory (runs/). Studies without a
    finished run are listed as not run yet; with none at all it is an error.
    """
    results, skipped = [], []
    for exp in studies:
        if has_runs(exp):
            report = build_report(exp)
            results.append(StudyResult(exp, report["arms"], StudyFacts(**report["ran"])))
        else:
            skipped.append(exp.name)
    if not results:
        raise MLPLabError(f"no study has finished runs yet ({', '.join(skipped)}); run: mlp-lab suite")
    out = Path(out_dir) if out_dir is not None else results[0].study.output_dir.parent
    out.mkdir(parents=True, exist_ok=True)
    effects_path = out / EFFECTS_FIGURE
    effects = _effects_figure(results, effects_path)
    rundir.atomic_write_text(out / "index.md", _markdown(results, skipped, effects, out))
    rundir.atomic_write_text(out / "index.html", _html(results, skipped, effects_path if effects else None, out))
    return {
        "studies": [s.study.name for s in results],
        "skipped": list(skipped),
        "summary": summary_rows(results),
        "index_md": out / "index.md",
        "index_html": out / "index.html",
        "arms": sum(len(s.rows) for s in results),
    }
