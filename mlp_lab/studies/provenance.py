"""What a study's runs really were, read from their run directories, not from the study file.

A report must say what ran: the seeds that have runs (not the ones the file lists), every key
whose recorded value differs from the study file (a `--set` given to `compare` or `suite`), the
study file's own `overrides`, its base config and how that base differs from the course's plain
one (`configs/plain.yaml`), the step engine each arm's runs trained with (arms of a `batch_norm`
or `activation` study can differ in it), and the numerics version, torch, device, machine and
threads the runs recorded, and for a user's model or data the code and data each arm ran with
(the target's label, its arguments and its file's recorded sha256; the source's kind, file and
fingerprint), so a report says which code and data its numbers came from. When runs of one arm disagree in a key (a rerun with another `--set`), that is a
conflict the report shows instead of pooling the runs silently. `config.yaml` and `summary.json`
are the source of truth; the study file only says what was meant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlp_lab.config.load import load_config, validate_config
from mlp_lab.config.overrides import flatten
from mlp_lab.config.schema import config_to_dict
from mlp_lab.config.targets import parse_target
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.shipped import shipped_dir
from mlp_lab.core.yamlfile import read_yaml_mapping
from mlp_lab.runs import rundir

PLAIN_CONFIG = "plain.yaml"
# Keys that differ between the runs of one arm by design, or name the run rather than describe it.
IGNORED_KEYS = ("seed", "name")
# The recorded content hashes of a user's code and data: a run recorded with another version of
# the file is no --set, and is said as such (`StudyFacts.code_lines`), by what it ran.
CONTENT_KEYS = ("model.code_sha256", "data.source.fingerprint")
HASH_SHOWN = 12  # hex digits of a content hash a report shows
# Where the data and the outputs live, and the device: they do not change what is trained, so a
# base's differences from plain leave them out.
PLACE_KEYS = ("data.root", "data.download", "train.device")
# The summary fields that say where and how a run was computed.
ENVIRONMENT_FIELDS = (
    ("numerics_version", "numerics version"),
    ("torch_version", "torch"),
    ("device", "device"),
    ("machine", "machine"),
    ("threads", "threads"),
)


@dataclass(frozen=True)
class StudyFacts:
    """What ran in one study, from its run directories."""

    seeds: list[int]  # seeds with a finished run in at least one arm
    set_keys: dict[str, list[Any]]  # key -> the values runs recorded that differ from the study file
    conflicts: dict[str, dict[str, dict[int, Any]]]  # arm -> key -> {seed: value}, where runs disagree
    file_overrides: dict[str, Any]  # the study file's own `overrides`
    base: str  # the base config as the study file names it
    base_vs_plain: dict[str, tuple[Any, Any]] | None  # key -> (plain's value, base's value); None: no plain
    environment: dict[str, list[Any]] = field(default_factory=dict)  # label -> distinct values recorded
    datasets: list[str] = field(default_factory=list)  # the datasets the runs recorded
    unchecked_sets: list[str] = field(default_factory=list)  # --set texts no study file could be compared with
    engines: dict[str, list[str]] = field(default_factory=dict)  # arm -> the engines its runs recorded
    # arm -> what its runs' user code and data were, one entry per distinct version (see `ran_with`)
    code: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The facts as short sentences, for the top of a report (markdown, backticks for code)."""
        seeds = ", ".join(map(str, self.seeds)) or "none"
        out = [f"Seeds with runs: {seeds}."]
        if self.base_vs_plain is None:
            out.append(f"Base: `{self.base}`.")
        elif not self.base_vs_plain:
            out.append(f"Base: `{self.base}`, the course's plain model.")
        else:
            diff = ", ".join(
                f"{k}={value_text(v)} (plain: {value_text(p)})" for k, (p, v) in self.base_vs_plain.items()
            )
            out.append(f"Base: `{self.base}`, which differs from `configs/plain.yaml` in {diff}.")
        if self.file_overrides:
            out.append(
                "Study file's overrides (every arm): "
                + ", ".join(f"`{k}={value_text(v)}`" for k, v in self.file_overrides.items())
                + "."
            )
        if self.set_keys:
            out.append(
                "Runs differ from the study file in (a --set): "
                + ", ".join(f"`{k}={' / '.join(value_text(v) for v in vals)}`" for k, vals in self.set_keys.items())
                + "."
            )
        if self.unchecked_sets:
            out.append("Every arm with " + ", ".join(f"`{o}`" for o in self.unchecked_sets) + " (--set).")
        if not self.set_keys and not self.unchecked_sets:
            out.append("Every run has the study file's config (no --set).")
        for arm, keys in self.conflicts.items():
            for key, by_seed in keys.items():
                seen = "; ".join(f"seed {s}: {value_text(v)}" for s, v in sorted(by_seed.items()))
                out.append(f"**Mixed configs**: arm `{arm}`'s runs disagree in `{key}` ({seen}); they are pooled here.")
        out.extend(self.engine_lines())
        env = [f"{label} {' / '.join(map(str, values))}" for label, values in self.environment.items() if values]
        if env:
            out.append("Computed with " + ", ".join(env) + ".")
        return out

    def code_lines(self) -> list[str]:
        """A markdown section naming each arm's user model (label, arguments, file hash) and user
        data (kind, file, fingerprint); none when every arm ran built-in models on built-in data."""
        if not any(entry.get("model") or entry.get("data") for entries in self.code.values() for entry in entries):
            return []
        lines = [
            "## Code and data",
            "",
            "What each arm's runs recorded (sha256: the first 12 hex digits of the file's content; "
            "an arm with two versions ran with both, and is pooled here).",
            "",
            "| arm | model | arguments | code sha256 | data |",
            "| --- | --- | --- | --- | --- |",
        ]
        for arm, entries in self.code.items():
            for entry in entries:
                lines.append(
                    f"| {arm} | {entry.get('model') or 'built-in ' + entry.get('kind', '')} | "
                    f"{entry.get('args') or '–'} | {entry.get('code_sha256') or '–'} | {entry.get('data') or '–'} |"
                )
        return [*lines, ""]

    def engine_lines(self) -> list[str]:
        """Which step engine trained the runs: one line when every arm's runs agree, else per arm."""
        recorded = {arm: engines for arm, engines in self.engines.items() if engines}
        distinct = {engine for engines in recorded.values() for engine in engines}
        if not distinct:
            return []  # runs made before the engine was recorded
        if len(distinct) == 1:
            return [f"Step engine: {distinct.pop()}."]
        by_arm = "; ".join(f"`{arm}`: {' / '.join(engines)}" for arm, engines in recorded.items())
        return [f"Step engines differ by arm: {by_arm}."]


def engine_text(summary: Mapping[str, Any]) -> str | None:
    """A run's engine and its numerics version as a report says them; None for a run made before
    summary.json recorded its engine."""
    if not summary.get("engine"):
        return None
    return f"`{summary['engine']}` (numerics version {summary.get('numerics_version')})"


def value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def args_text(args: Mapping[str, Any]) -> str:
    """A user model's arguments as a report shows them: `dropout=0.2, hidden_sizes=[256, 128]`."""
    return ", ".join(f"{key}={value_text(value)}" for key, value in args.items())


def data_text(config: Any) -> str | None:
    """A user data source as a report names it, e.g. `csv breast_cancer.csv (fingerprint ce2dbe548442)`;
    None for a registered dataset."""
    source = config.data.source
    if source is None:
        return None
    if getattr(source, "path", None):
        where = Path(source.path).name
    elif source.kind == "python":
        where = parse_target(source.target).label
    else:
        where = source.dataset_name
    fingerprint = f" (fingerprint {source.fingerprint[:HASH_SHOWN]})" if source.fingerprint else ""
    return f"{source.kind} `{where}`{fingerprint}"


def ran_with(config: Any) -> dict[str, str]:
    """The code and data a run's config names: for a user model its `model` label
    (my_mlp.py:ParameterizedMLP), `args` and `code_sha256` (first 12 hex digits), for a built-in one
    its `kind`; `data` for a user source (see `data_text`)."""
    model = config.model
    out: dict[str, str] = {}
    if model.kind == "user":
        out["model"] = f"`{model.parsed.label}`"
        out["args"] = args_text(model.args)
        out["code_sha256"] = (model.code_sha256 or "")[:HASH_SHOWN]
    else:
        out["kind"] = model.kind
    data = data_text(config)
    if data is not None:
        out["data"] = data
    return out


def _flat_config(config: Any) -> dict[str, Any]:
    flat = {k: v for k, v in flatten(config_to_dict(config)).items() if k not in IGNORED_KEYS}
    # A user's file by its name, as the config hash holds it: where the project lies is no difference.
    if getattr(config.model, "kind", None) == "user":
        flat["model.target"] = config.model.parsed.label
    if flat.get("data.source.path"):
        flat["data.source.path"] = Path(flat["data.source.path"]).name
    return flat


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def base_and_plain(study_path: Path) -> tuple[str, dict[str, tuple[Any, Any]] | None, dict[str, Any]]:
    """The study file's `base` as written, its differences from the plain config beside it (or the
    shipped one; None when neither is there) and the file's own overrides, flattened."""
    raw = read_yaml_mapping(study_path)
    base_name = str(raw.get("base", ""))
    overrides = flatten(raw.get("overrides") or {})
    base_path = (study_path.parent / base_name).resolve()
    plain_path = base_path.parent / PLAIN_CONFIG
    if not plain_path.exists():
        plain_path = shipped_dir("configs") / PLAIN_CONFIG
    try:
        base_config = load_config(base_path)
        base = _flat_config(base_config)
        plain = _flat_config(load_config(plain_path))
    except MLPLabError:
        return base_name, None, overrides
    differs = {
        k: (plain.get(k), v)
        for k, v in base.items()
        if plain.get(k) != v and k not in PLACE_KEYS + CONTENT_KEYS and not k.startswith("output.")
    }
    return base_name, _whole_sections(differs, base, plain, base_config), overrides


def _whole_sections(differs: dict[str, tuple[Any, Any]], base: dict[str, Any], plain: dict[str, Any], config: Any):
    """A user's model or data where plain has a built-in one is one difference, not one per key
    against nulls: `model=my_mlp.py:Net(width=8) (plain: built-in mlp)`, `data.source=csv t.csv
    (label=diagnosis) (plain: fashion_mnist)`, the source's keys at their defaults left out."""
    out = dict(differs)
    if base.get("model.kind") == "user" and plain.get("model.kind") != "user":
        out = {k: v for k, v in out.items() if not k.startswith("model.")}
        args = args_text({k.removeprefix("model.args."): v for k, v in base.items() if k.startswith("model.args.")})
        given = f" input={base['model.input']}" if base.get("model.input") not in (None, "auto") else ""
        out = {"model": (f"built-in {plain.get('model.kind')}", f"{base['model.target']}({args}){given}"), **out}
    if base.get("data.source.kind") and not plain.get("data.source.kind"):
        source = {
            k.removeprefix("data.source."): v
            for k, v in base.items()
            if k.startswith("data.source.") and k not in CONTENT_KEYS and v is not None
        }
        fields = type(config.data.source).model_fields
        source = {
            k: v
            for k, v in source.items()
            if k in ("kind", "path", "target", "name") or k not in fields or fields[k].default != v
        }
        kind, where = (
            source.pop("kind"),
            source.pop("path", None) or source.pop("target", None) or source.pop("name", ""),
        )
        extra = f" ({args_text(source)})" if source else ""
        out = {
            k: v for k, v in out.items() if not k.startswith("data.source.") and k not in ("data.dataset", "data.name")
        }
        out["data.source"] = (plain.get("data.dataset"), f"{kind} {where}{extra}")
    return out


def study_facts(
    study_path: Path,
    file_configs: Mapping[str, Any],
    runs: Mapping[str, Mapping[int, Path]],
    unchecked_sets: Sequence[str] = (),
) -> StudyFacts:
    """The facts of a study whose finished runs are `runs` (arm -> {seed: run directory});
    `file_configs` maps each arm to its config as the study file alone makes it (no --set), or,
    where the file cannot make it without them, with the `unchecked_sets` applied."""
    set_keys: dict[str, list[Any]] = {}
    conflicts: dict[str, dict[str, dict[int, Any]]] = {}
    environment: dict[str, list[Any]] = {label: [] for _, label in ENVIRONMENT_FIELDS}
    seeds: set[int] = set()
    datasets: list[str] = []
    engines: dict[str, list[str]] = {}
    code: dict[str, list[dict[str, str]]] = {}
    for arm, by_seed in runs.items():
        meant = _flat_config(file_configs[arm])
        recorded: dict[int, dict[str, Any]] = {}
        for seed, run_dir in by_seed.items():
            seeds.add(seed)
            try:
                # Through the schema, as `meant` was: a run made before the per-kind model
                # sections recorded an MLP's unused conv blocks, which are no difference.
                path = run_dir / rundir.CONFIG_FILE
                config = validate_config(read_yaml_mapping(path), str(path), machine=False)
                flat = _flat_config(config)
                summary = rundir.read_summary(run_dir)
            except (MLPLabError, OSError, ValueError):
                continue  # a run whose files cannot be read is the report's to flag, not ours
            recorded[seed] = {k: v for k, v in flat.items() if k not in IGNORED_KEYS + CONTENT_KEYS}
            used = ran_with(config)
            if used not in code.setdefault(arm, []):
                code[arm].append(used)
            engine = engine_text(summary)
            if engine is not None and engine not in engines.setdefault(arm, []):
                engines[arm].append(engine)
            if summary.get("dataset") and summary["dataset"] not in datasets:
                datasets.append(summary["dataset"])
            for key, label in ENVIRONMENT_FIELDS:
                value = summary.get(key)
                if value is not None and value not in environment[label]:
                    environment[label].append(value)
        keys = sorted({k for flat in recorded.values() for k in flat if flat[k] != meant.get(k)})
        for key in keys:
            values = {seed: flat.get(key) for seed, flat in recorded.items()}
            for value in values.values():
                if value != meant.get(key) and value not in set_keys.setdefault(key, []):
                    set_keys[key].append(value)
            if len({repr(_hashable(v)) for v in values.values()}) > 1:
                conflicts.setdefault(arm, {})[key] = values
    base, base_vs_plain, file_overrides = base_and_plain(study_path)
    return StudyFacts(
        sorted(seeds),
        dict(sorted(set_keys.items())),
        conflicts,
        file_overrides,
        base,
        base_vs_plain,
        environment,
        datasets,
        list(unchecked_sets),
        engines,
        code,
    )
