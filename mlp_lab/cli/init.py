"""`mlp-lab init`: an editable copy of the shipped configs, studies and searches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import app, say, user_errors
from mlp_lab.core.shipped import write_copy


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write configs/, experiments/ and searches/.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace files of the same names (other files are left alone).")
    ] = False,
) -> None:
    """Write an editable copy of the shipped configs, studies and searches into DIRECTORY.

    Names then resolve to the copy when run from DIRECTORY (the user's folders come first).

    Example: mlp-lab init proj && cd proj && mlp-lab run baseline
    """
    with user_errors():
        written = write_copy(directory, force)
    for folder, count in written:
        say(f"wrote {folder}/ ({count} files)")
