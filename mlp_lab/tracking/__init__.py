"""MLflow tracking and model registry (the ``[track]`` extra): a mirror of the run directories.

The run directories stay the source of truth; MLflow gets a copy that can be browsed, compared
and loaded by name. The package is layered: `store` (where tracking goes, the client, errors)
and `logger` (a run's live MLflow run) sit low, beside the other loggers; `export` (copying
finished runs and a study's report), `registry` (registered models) and `workflows` (what
``--track`` does around a command) sit above the studies and searches they handle.

mlflow is imported inside the functions that need it; ``mlp-lab`` works without it.
"""
