"""mlp-lab: a fast, reproducible PyTorch experiment runner for MLP ablation studies."""

__version__ = "0.1.0"

# The Python API (docs/guide/api.md) lives in mlp_lab.api, at the top layer, and is imported on
# first use: every `import mlp_lab.x` runs this file first, so it must stay cheap (no torch, no
# pydantic) for `mlp-lab --help` and for the layers below the API. tests/test_layers.py allows
# this file its two edges up, and only these.
API_NAMES = (
    "load_config",
    "run",
    "compare",
    "track",
    "load_model",  # and search: the search subpackage, made callable below
    "RunResult",
    "StudyReport",
    "SearchReport",
    "Model",
    "Predictions",
)

# `mlp_lab.search` is both the search subpackage and the API's search(): Python sets the
# subpackage as this package's attribute whenever it is imported, which would hide a function
# of that name, so the subpackage (an __init__ with only a docstring: importing it costs
# nothing) is made callable instead. `mlp_lab.search.spec` stays the module it was.
import types as _types  # noqa: E402

from mlp_lab import search as _search_package  # noqa: E402


class _CallableSearchPackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        """mlp_lab.search(name, trials=None, jobs=1, threads=None, overrides=None): see mlp_lab.api.search."""
        from mlp_lab import api

        return api.search(*args, **kwargs)


_search_package.__class__ = _CallableSearchPackage


def __getattr__(name: str):
    if name in API_NAMES:
        from mlp_lab import api

        return getattr(api, name)
    raise AttributeError(f"module 'mlp_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API_NAMES})
