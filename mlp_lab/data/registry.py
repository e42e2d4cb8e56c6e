"""The datasets a run may train on: the built-in sources and any registered since.

Adding a dataset is one module that builds a `DatasetSource` plus one `register(source)` call;
registering also makes its name one a config may give (`mlp_lab.config.datasets`).
"""

from __future__ import annotations

from mlp_lab.config import datasets
from mlp_lab.data.builtin import BUILTIN
from mlp_lab.data.source import DataError, DatasetSource

SOURCES: dict[str, DatasetSource] = {source.name: source for source in BUILTIN}


def register(source: DatasetSource) -> DatasetSource:
    """Make `source` a dataset configs may name (`data.dataset: <its name>`); returns it.
    Registering the same source again is a no-op, another one under a taken name an error."""
    known = SOURCES.get(source.name)
    if known is not None and known != source:
        raise ValueError(f"dataset {source.name!r} is already registered")
    datasets.register_facts(source.facts)
    SOURCES[source.name] = source
    return source


def unregister(name: str) -> None:
    """Forget a registered dataset (a test's or a notebook's own)."""
    SOURCES.pop(name, None)
    datasets.unregister_facts(name)


def source_for(name: str) -> DatasetSource:
    """The registered source of dataset `name`."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"dataset {name!r} is not registered; known: {', '.join(SOURCES)}") from None
