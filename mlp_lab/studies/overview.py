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
from pathlib import Path
from typing import Any

from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.shipped import shipped_dir
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import STUDIES_DIR, Study, load_study, plan
from mlp_lab.studies.findings import (
    INTRO,
    SUMMARY_HEAD,
    SUMMARY_KEYS,
    StudyResult,
    effects_figure,
    finding,
    incomplete_notes,
    study_meta,
    study_table,
    summary_rows,
    what_ran,
)
from mlp_lab.studies.provenance import StudyFacts
from mlp_lab.studies.report import build_report

# The course's order: the plain-base ladder, the first lesson on MNIST, why CNNs beat MLPs, then the rest by name.
LEAD_STUDIES = ("ladder", "mnist_linear_vs_mlp", "mlp_vs_cnn", "mlp_vs_cnn_fashion", "permuted_pixels")
MAIN_FIGURE = "val_curves.png"  # per study: the curves show why the verdicts come out as they do
EFFECTS_FIGURE = "overview_effects.png"


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
            study_meta(study),
            "",
            *[f"- {line}" for line in study.ran.lines()],
            "",
            f"**Question.** {exp.description}",
            "",
            f"**Finding.** {finding(study)}",
            "",
        ]
        head, body = study_table(study)
        lines += _md_table(head, [[f"`{c}`" if i == 1 else c for i, c in enumerate(row)] for row in body])
        notes = incomplete_notes(study)
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
        meta = html.escape(study_meta(study)).replace("`", "")
        parts += [
            f'<h2 id="{html.escape(exp.name)}">{html.escape(exp.name)}</h2>',
            f'<p class="meta">{meta}</p>',
            '<ul class="meta">' + "".join(f"<li>{_markup(line)}</li>" for line in study.ran.lines()) + "</ul>",
            f"<p><b>Question.</b> {html.escape(exp.description)}</p>",
            f"<p><b>Finding.</b> {html.escape(finding(study))}</p>",
        ]
        head, rows = study_table(study)
        parts.append(_html_table(head, rows, verdict_col=5, num_cols={2, 3, 4, 6, 7}, code_col=1))
        notes = incomplete_notes(study)
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
    effects = effects_figure(results, effects_path)
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
