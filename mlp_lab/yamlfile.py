"""YAML files read strictly: a key written twice or a tab in the indentation is an error (PyYAML
lets the last key win silently), and every problem is one ConfigError line with the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlp_lab.errors import ConfigError, clip_repr


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records keys written twice in one mapping (PyYAML lets the last one win
    silently, so a forgotten earlier line would quietly lose)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.setdefault(key, line)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first != line:
                    self.duplicates.append(
                        f"line {line}: key {clip_repr(key)} is written twice (first at line {first}); remove one"
                    )
        return super().construct_mapping(node, deep)


def _tab_indents(text: str) -> list[str]:
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            lines.append(f"line {number}: a tab in the indentation; YAML indents with spaces")
    return lines


def safe_load_strict(text: str) -> Any:
    """yaml.safe_load that raises ValueError (one line per problem) for a key written twice in a
    mapping or a tab in the indentation; YAML syntax errors raise yaml.YAMLError as usual."""
    tabs = _tab_indents(text)
    if tabs:
        raise ValueError("\n".join(tabs))
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ValueError("\n".join(loader.duplicates))
    return data


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; any problem is a one-line ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"{path}: file not found"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = safe_load_strict(text)
    except ValueError as exc:
        raise ConfigError([f"{path}: {line}" for line in str(exc).splitlines()]) from None
    except yaml.YAMLError as exc:
        # Point at where the broken construct starts (an unclosed bracket's line), not only at
        # where the parser gave up, which is often the end of the file.
        context, problem = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
        mark = context or problem
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(filter(None, [getattr(exc, "context", None), getattr(exc, "problem", None)]))
        what = what or str(exc).splitlines()[0]
        if context and problem and problem.line != context.line:
            what += f" (at line {problem.line + 1})"
        raise ConfigError([f"{path}: {where}YAML syntax error: {what}"]) from None
    if data is None:
        raise ConfigError([f"{path}: file is empty, expected a mapping of config keys"])
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of config keys, got {type(data).__name__}"])
    return data
