"""A python source: a callable (FILE.py:NAME or package.module:NAME, data.source.target) that
returns arrays or tensors: ``(x, y)``, ``(x, y, x_test, y_test)``, or a dict with those keys and
optionally ``classes``. Its code is imported after checking the hash the config recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.config.sources import PythonSource
from mlp_lab.config.targets import parse_target
from mlp_lab.core.usercode import call_user_code, load_target
from mlp_lab.data.raw import RawData, as_inputs, check_fits, check_lengths, encode_labels, make_facts
from mlp_lab.data.source import DataError

KEY = "data.source.target"
EXPECTED = "return (x, y), (x, y, x_test, y_test) or a dict with keys x, y (and x_test, y_test, classes)"


def _parts(returned: Any, where: str) -> dict[str, Any]:
    if isinstance(returned, Mapping):
        unknown = sorted(set(returned) - {"x", "y", "x_test", "y_test", "classes"})
        if "x" not in returned or "y" not in returned or unknown:
            detail = f"unknown keys {unknown}" if unknown else f"keys {sorted(returned)}"
            raise DataError(f"{KEY}: {where} returned a dict with {detail}; {EXPECTED}")
        parts = dict(returned)
    elif isinstance(returned, tuple | list) and len(returned) in (2, 4):
        parts = dict(zip(("x", "y", "x_test", "y_test"), returned, strict=False))
    else:
        what = f"a {len(returned)}-tuple" if isinstance(returned, tuple | list) else f"a {type(returned).__name__}"
        raise DataError(f"{KEY}: {where} returned {what}; {EXPECTED}")
    if ("x_test" in parts) != ("y_test" in parts):
        raise DataError(f"{KEY}: {where} returned x_test without y_test or y_test without x_test; {EXPECTED}")
    return parts


def read_python(source: PythonSource) -> RawData:
    """Call the target with data.source.args and check what it returned."""
    target = parse_target(source.target)
    fn = load_target(target.name, file=target.file, module=target.module, sha256=source.fingerprint, key=KEY)
    returned = call_user_code(fn, what=KEY, **source.args)
    parts = _parts(returned, source.target)
    x = as_inputs(parts["x"], f"{KEY}: x")
    check_fits(source.target, x.shape[0], x[0].numel() if x.shape[0] else 0, x.element_size())
    label_parts = [(parts["y"], f"{KEY}: y")]
    if "y_test" in parts:
        label_parts.append((parts["y_test"], f"{KEY}: y_test"))
    classes = parts.get("classes")
    encoded, names = encode_labels(label_parts, [str(c) for c in classes] if classes is not None else None)
    check_lengths(x, encoded[0], f"{KEY}: x", "y")
    test = None
    if "x_test" in parts:
        x_test = as_inputs(parts["x_test"], f"{KEY}: x_test")
        check_lengths(x_test, encoded[1], f"{KEY}: x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{KEY}: x_test rows have shape {tuple(x_test.shape[1:])}, x's {tuple(x.shape[1:])}")
        test = (x_test, encoded[1])
    # (N, F) rows are a table (held as (N, F, 1, 1)): its features are named by column.
    features = [f"x[{i}]" for i in range(x.shape[1])] if x.shape[2:] == (1, 1) else []
    return RawData(x, encoded[0], test, make_facts(source, x.shape[1:], names, features), source.target)


def python_facts(source: PythonSource) -> DatasetFacts:
    """The facts need the data: the target is called (found once per fingerprint, `facts_for`)."""
    return read_python(source).facts
