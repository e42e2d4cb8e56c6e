"""YAML files read strictly: a key written twice or a tab in the indentation is an error (PyYAML
lets the last key win silently), and every problem is one ConfigError line with the file and line.

Every YAML the tool reads comes through here (configs, study and search files, a run's saved
config.yaml, --set values), so the limits on a hostile file live here once: no anchors' aliases
(ten lines of nested aliases expand to a billion nodes and hang the reader; a config needs
none), no nesting deeper than any config has, and no file larger than any config is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlp_lab.core.errors import ConfigError, clip, clip_repr

# The largest YAML file read: configs, studies and searches are a few KB; anything near this is
# not one, and reading it whole would only spend memory.
MAX_YAML_BYTES = 1 << 20
# Deeper nesting than any config has; PyYAML recurses once a level, so a file of 10,000 "["
# would otherwise end in a RecursionError.
MAX_YAML_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records keys written twice in one mapping (PyYAML lets the last one win
    silently, so a forgotten earlier line would quietly lose)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []
        self.depth = 0

    def compose_node(self, parent, index):
        # Refused as it is parsed, before anything is expanded: an alias bomb costs nothing.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ValueError(
                f"line {event.start_mark.line + 1}: alias *{clip(event.anchor, 40)} repeats another part of the "
                "file; mlp-lab files take no anchors or aliases, write the value out"
            )
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise ValueError(f"line {mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep; no config is")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

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
    mapping, a tab in the indentation, an alias or nesting deeper than MAX_YAML_DEPTH; YAML syntax
    errors raise yaml.YAMLError as usual."""
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
        if path.is_symlink():
            raise ConfigError([f"{path}: a symbolic link to a missing file; point it at a YAML file"])
        raise ConfigError([f"{path}: file not found"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a YAML file"])
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(
                [f"{path}: larger than {MAX_YAML_BYTES >> 20} MiB; a config is a few KB, is this the right file?"]
            )
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8 YAML"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
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
