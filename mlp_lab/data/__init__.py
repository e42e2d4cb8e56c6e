"""Datasets as tensors on the device: the registry of sources (built-in and registered), find,
verify, load, split, normalise, augment; and a user's own sources (`data.source`, `user`)."""

from mlp_lab.config.datasets import register_source_facts
from mlp_lab.config.sources import SOURCE_KINDS


def _source_facts(data):
    # Imported when a user's source is first asked about: its readers pull in Pillow and the
    # user's code, which `import mlp_lab.data` alone should not.
    from mlp_lab.data.user import FACTS

    return FACTS[data.source.kind](data)


# Importing the data layer is what makes `config.datasets.facts_for` know a user's source.
for _kind in SOURCE_KINDS:
    register_source_facts(_kind, _source_facts)


def __getattr__(name: str):
    # Models logged to MLflow before the packages carry a copy of mlflow_model.py that imports
    # `from mlp_lab.data import to_features` (data was a module then); MLflow runs that copy on
    # every load, so the name stays reachable here, imported only when such a model asks.
    if name == "to_features":
        from mlp_lab.data.normalise import to_features

        return to_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
