"""Generated configs, study files and search files, valid and broken, through the real CLI.

Hypothesis writes each file from the schema's real keys and from random ones: values of every
YAML type (unicode text, huge integers, .inf and .nan, nested lists and mappings), then for half
of them breaks the text (cut short, a character inserted, a tab, a key twice, an anchor and its
alias, binary bytes). Each goes through the verb a user would type, in-process:
`validate` for a config, `report` for a study (its loader is compare's; with no runs yet a good
study ends in "no runs yet"), `search --confirm` for a search (a good one ends in "no best trial
yet"), so that no example trains. For each: exit 0 or 2, no traceback, on error only `error:`
lines of bounded length that name the file, nothing written, and an answer within seconds.

The CI budget is fixed and derandomized (the same examples every run); for a longer, random
exploration: MLP_LAB_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_files.py
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.overrides import flatten
from mlp_lab.config.schema import Config

runner = CliRunner()
MAX_LINE = 400  # characters, as in tests/test_errors.py
MAX_SECONDS = 10.0  # one example, start to answer: a hang (an alias bomb) or a runaway parse fails here

_EXAMPLES = os.environ.get("MLP_LAB_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES) if _EXAMPLES else 120,
    derandomize=not _EXAMPLES,  # CI: the same examples every run; a local budget explores afresh
    deadline=None,  # time is checked per example below, with a margin the 2-core CI machine needs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

BASE = "name: base\ntrain: {epochs: 1, device: cpu}\noutput: {dir: runs, tensorboard: false}\n"
# Every dotted key of the config (the real targets of a user's typo), data.root and output.dir
# aside: a generated path must not send a write, or a read, outside the example's folder.
CONFIG_KEYS = sorted(k for k in flatten(Config().model_dump()) if k not in ("data.root", "output.dir"))

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # any unicode YAML can hold
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12
)
keys = st.sampled_from(CONFIG_KEYS) | text


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}; a key that clashes with a value already set keeps the value."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node, parts = out, str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return out


DEFAULTS = flatten(Config().model_dump())


def _plausible(key: str) -> st.SearchStrategy:
    """A value of the key's own type near its default: so that about half the configs are good."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.just(default) | st.integers(1, 8)
    if isinstance(default, float):
        return st.just(default) | st.floats(0.001, 0.5)
    return st.just(default)


plausible_docs = st.lists(st.sampled_from(CONFIG_KEYS), unique=True, max_size=6).flatmap(
    lambda chosen: st.fixed_dictionaries({key: _plausible(key) for key in chosen})
)
config_docs = st.builds(_nest, plausible_docs | st.dictionaries(keys, values, max_size=8))
arm_changes = plausible_docs | st.dictionaries(st.sampled_from(CONFIG_KEYS) | text, values, max_size=3) | st.none()
good_studies = st.fixed_dictionaries(
    {
        "base": st.just("../base.yaml"),
        "factor": st.just("model.dropout"),
        "reference": st.just("a"),
        "seeds": st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
        "arms": st.fixed_dictionaries(
            {"a": st.just({}), "b": st.fixed_dictionaries({"model.dropout": st.floats(0, 0.9)})}
        ),
    }
)
good_searches = st.fixed_dictionaries(
    {
        "base": st.just("../base.yaml"),
        "sampler": st.sampled_from(["random", "tpe"]),
        "trials": st.integers(1, 5),
        "params": st.fixed_dictionaries(
            {
                "train.optimizer.lr": st.fixed_dictionaries(
                    {"type": st.just("float"), "low": st.just(1e-4), "high": st.just(0.1), "log": st.booleans()}
                )
            }
        ),
    }
)
study_docs = good_studies | st.fixed_dictionaries(
    {"base": st.just("../base.yaml") | text},
    optional={
        "factor": st.sampled_from(CONFIG_KEYS) | st.lists(st.sampled_from(CONFIG_KEYS), max_size=3) | values,
        "reference": st.sampled_from(["a", "b"]) | values,
        "seeds": st.lists(st.integers(min_value=-5, max_value=10**12), max_size=4) | values,
        "arms": st.dictionaries(st.sampled_from(["a", "b", "c"]) | text, arm_changes, max_size=4) | values,
        "overrides": st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=3) | values,
        "description": values,
        "one_factor_per_arm": values,
    },
)
param_specs = st.fixed_dictionaries(
    {"type": st.sampled_from(["float", "int", "categorical"]) | values},
    optional={"low": scalars, "high": scalars, "step": scalars, "log": scalars, "choices": values},
)
search_docs = good_searches | st.fixed_dictionaries(
    {"base": st.just("../base.yaml") | text},
    optional={
        "sampler": st.sampled_from(["random", "tpe", "grid"]) | values,
        "trials": st.integers(min_value=-3, max_value=10**9) | values,
        "metric": st.sampled_from(["val/acc", "val/loss", "test/acc"]) | values,
        "params": st.dictionaries(st.sampled_from(CONFIG_KEYS) | text, param_specs | values, max_size=3) | values,
        "seed": values,
        "overrides": st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=3) | values,
        "pruner": values,
    },
)


@st.composite
def broken(draw, docs) -> bytes:
    """A document as YAML text, then (half the time) broken the way editors and disks break files."""
    doc = draw(docs)
    extra = draw(st.dictionaries(text, values, max_size=2))
    if isinstance(doc, dict):
        doc = {**doc, **extra}
    body = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    how = draw(st.sampled_from(["as is", "as is", "cut", "insert", "tab", "twice", "alias", "bytes", "deep"]))
    if how == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif how == "insert":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=3)) + body[at:]
    elif how == "tab":
        lines = body.splitlines()
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        body = "\n".join("\t" + line if i == at else line for i, line in enumerate(lines)) + "\n"
    elif how == "twice":
        body += body.splitlines()[0] + "\n" if body.strip() else "a: 1\na: 2\n"
    elif how == "alias":
        body += "anchored: &x [1, 2]\nrepeated: *x\n"
    elif how == "deep":
        depth = draw(st.integers(1, 200))
        body += "deep: " + "[" * depth + "]" * depth + "\n"
    if how == "bytes":
        return draw(st.binary(max_size=200))
    return body.encode("utf-8")


def _check(args: list[str], relative: str, content: bytes, good_end: str | None = None) -> None:
    """Write `content` at `relative` in a fresh folder (beside base.yaml), run `args` there and
    check the answer: exit 0 or 2, one-line errors naming the file, no traceback, nothing written."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        root = Path(tmp)
        (root / "base.yaml").write_text(BASE)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        started = time.monotonic()
        result = runner.invoke(app, args)
        elapsed = time.monotonic() - started
        after = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    output = result.output
    # What the examples reached (pytest --hypothesis-show-statistics): good files as well as refusals.
    event(f"exit {result.exit_code}" + (" (a good file)" if good_end and good_end in result.stderr else ""))
    assert elapsed < MAX_SECONDS, (elapsed, content[:200])
    assert "Traceback" not in output, (output, content[:300])
    assert result.exception is None or isinstance(result.exception, SystemExit), (repr(result.exception), content)
    assert result.exit_code in (0, 2), (result.exit_code, output, content[:300])
    assert after == before, "something was written"
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines, output
        for line in lines:
            assert line.startswith("error: ") and len(line) <= MAX_LINE, (line, content[:300])
        if good_end is not None and good_end in result.stderr:
            assert len(lines) == 1, lines  # a good file's only complaint is that nothing has run yet
        else:
            for line in lines:
                assert Path(relative).name in line or "base.yaml" in line, (line, content[:300])


@pytest.mark.slow
@FUZZ
@given(broken(config_docs))
def test_generated_configs_through_validate(content):
    _check(["validate", "c.yaml"], "c.yaml", content)


@pytest.mark.slow
@FUZZ
@given(broken(study_docs))
def test_generated_study_files_through_the_study_loader(content):
    _check(["report", "experiments/x.yaml"], "experiments/x.yaml", content, good_end="no runs yet")


@pytest.mark.slow
@FUZZ
@given(broken(search_docs))
def test_generated_search_files_through_search(content):
    _check(["search", "searches/s.yaml", "--confirm"], "searches/s.yaml", content, good_end="no best trial yet")


def test_the_generators_reach_good_files():
    """A fuzz test that never makes a valid file tests only the refusals: the config generator
    must reach configs that validate (found by a fixed, derandomized search)."""
    from hypothesis import find

    from mlp_lab.config.load import validate_config
    from mlp_lab.core.errors import MLPLabError

    def validates(doc: dict) -> bool:
        try:
            validate_config(doc, "c.yaml")
        except MLPLabError:
            return False
        return len(doc) >= 2

    found = find(config_docs, validates, settings=settings(database=None, derandomize=True, max_examples=200))
    assert len(found) >= 2
