"""Study reports as the Runs page shows them: each study's report.md, without its image links
(Streamlit cannot follow relative links), and its plots to show as images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class StudyReport:
    """A study's report as the app shows it: its markdown (without image links) and plots."""

    name: str
    directory: Path
    markdown: str
    plots: list[Path]


def list_studies(runs_dir: str | Path) -> list[StudyReport]:
    """Every study with a report under `runs_dir` (``<runs>/<study>/report.md``)."""
    studies = []
    for report in sorted(Path(runs_dir).glob("*/report.md")):
        text = report.read_text(encoding="utf-8", errors="replace")
        # Streamlit cannot follow the report's relative image links: the plots are shown as images.
        markdown = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("!["))
        studies.append(StudyReport(report.parent.name, report.parent, markdown, sorted(report.parent.glob("*.png"))))
    return studies
