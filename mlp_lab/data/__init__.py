"""Datasets as tensors on the device: the registry of sources (built-in and registered), find,
verify, load, split, normalise, augment."""


def __getattr__(name: str):
    # Models logged to MLflow before the packages carry a copy of mlflow_model.py that imports
    # `from mlp_lab.data import to_features` (data was a module then); MLflow runs that copy on
    # every load, so the name stays reachable here, imported only when such a model asks.
    if name == "to_features":
        from mlp_lab.data.normalise import to_features

        return to_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
