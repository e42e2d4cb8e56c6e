"""Study reports as the Runs page shows them: each study's report.md cut at its image links
(Streamlit's markdown cannot follow a relative link), so that each plot is shown where the report
places it, under its own heading."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# A line that is only an image link: ![alt](relative/path.png)
IMAGE_LINE = re.compile(r"^\s*!\[(?P<alt>[^\]]*)\]\((?P<target>[^)\s]+)\)\s*$")


@dataclass
class StudyReport:
    """A study's report as the app shows it: markdown pieces and plots in the report's order."""

    name: str
    directory: Path
    parts: list[str | Path]  # markdown text, or a plot's file where the report shows it

    @property
    def plots(self) -> list[Path]:
        return [part for part in self.parts if isinstance(part, Path)]


def report_parts(text: str, directory: Path) -> list[str | Path]:
    """A report's markdown cut at each image line: text, plot, text, ... A link to a file that
    is not in the study's folder (or is missing) stays text, as the report wrote it."""
    parts: list[str | Path] = []
    lines: list[str] = []
    for line in text.splitlines():
        found = IMAGE_LINE.match(line)
        target = (directory / found["target"]).resolve() if found else None
        if target is not None and target.is_file() and target.is_relative_to(directory.resolve()):
            if "\n".join(lines).strip():
                parts.append("\n".join(lines))
            parts.append(target)
            lines = []
        else:
            lines.append(line)
    if "\n".join(lines).strip():
        parts.append("\n".join(lines))
    return parts


def list_studies(runs_dir: str | Path) -> list[StudyReport]:
    """Every study with a report under `runs_dir` (``<runs>/<study>/report.md``)."""
    studies = []
    for report in sorted(Path(runs_dir).glob("*/report.md")):
        text = report.read_text(encoding="utf-8", errors="replace")
        studies.append(StudyReport(report.parent.name, report.parent, report_parts(text, report.parent)))
    return studies
