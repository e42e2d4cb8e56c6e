"""The honest number after a search: its best trial's config against the base config, retrained
over seeds and tested once each, run and reported as a two-arm study by the ablations' code.

Tracking stays with the caller (``--track``): it tracks the study `confirmation_experiment`
builds, hands it to `confirm`, then attaches the study's report.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from mlp_lab.config.load import validate_config
from mlp_lab.config.overrides import apply_set_options, flatten, set_dotted
from mlp_lab.config.schema import config_to_dict
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.yamlfile import read_yaml_mapping
from mlp_lab.execution.executors import Executor
from mlp_lab.runs import rundir
from mlp_lab.search.spec import BEST_CONFIG_FILE, Search
from mlp_lab.studies.ablation import Arm, CompareResult, Study, compare
from mlp_lab.studies.report import build_report


def confirmation_study(search: Search, seeds: Sequence[int] = (0, 1, 2)) -> Study:
    """The best trial's config against the base config over `seeds`, as a two-arm study whose
    runs go to ``<search dir>/confirm/{base,best}/seed-<n>/``: the ablations' code runs and
    reports it (test accuracy mean ± std, the paired difference and its 95% interval). The search
    file's `confirm.overrides` apply to both arms alike."""
    best_path = search.output_dir / BEST_CONFIG_FILE
    if not best_path.exists():
        raise MLPLabError(f"{best_path}: no best trial yet; run: mlp-lab search {search.name}")
    configs = {}
    for arm, raw, where in [
        ("base", copy.deepcopy(search.base), f"{search.path}: base + confirm.overrides"),
        ("best", read_yaml_mapping(best_path), f"{best_path} + confirm.overrides"),
    ]:
        for key, value in search.confirm_overrides.items():
            set_dotted(raw, key, value)
        problems: list[str] = []
        sources = apply_set_options(raw, search.overrides, problems)
        if problems:
            raise ConfigError(problems)
        raw["name"] = f"{search.name}-{arm}"
        configs[arm] = validate_config(raw, where, sources)
    base_flat, best_flat = flatten(config_to_dict(configs["base"])), flatten(config_to_dict(configs["best"]))
    changes = {k: v for k, v in best_flat.items() if k != "name" and base_flat.get(k) != v}
    arms = [Arm("base", {}, configs["base"]), Arm("best", changes, configs["best"])]
    retrained = (
        ""
        if not search.confirm_overrides
        else " Both arms with "
        + ", ".join(f"{k}={v}" for k, v in search.confirm_overrides.items())
        + " (the search file's confirm.overrides)."
    )
    if search.overrides:
        retrained += " Both arms with " + ", ".join(search.overrides) + " (--set)."
    return Study(
        f"{search.name}-confirm",
        search.path,
        f"Confirmation of search {search.name}: its best trial's config against the base config, "
        f"retrained over seeds {', '.join(map(str, seeds))} on the same split and tested once each." + retrained,
        [p.key for p in search.params],
        "base",
        list(seeds),
        arms,
        search.output_dir / "confirm",
        search.overrides,
    )


def confirm(
    search: Search,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    study: Study | None = None,
    jobs: int = 1,
    threads: int | None = None,
    data_dirs: Sequence[str] = (),
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> tuple[CompareResult, list[str]]:
    """Retrain the best and the base config over `seeds` and report them with the ablations' code.

    Returns the compare result and the report's lines for best vs base (none when interrupted);
    finished runs are skipped on a second call, like `compare`. `study` is the confirmation
    study to run, by default `confirmation_experiment(search, seeds)`: a caller that tracks it in
    MLflow builds it, tracks it, passes it here and attaches its report afterwards.
    """
    if study is None:
        study = confirmation_study(search, seeds)
    result = compare(study, jobs=jobs, threads=threads, data_dirs=data_dirs, stop=stop, log=log, executor=executor)
    if result.interrupted:
        return result, []
    report = build_report(study)
    lines = []
    for row in report["arms"]:
        std = f" ± {row['test_acc_std'] * 100:.2f}" if row["test_acc_std"] is not None else ""
        acc = f"{row['test_acc_mean'] * 100:.2f}{std}" if row["test_acc_mean"] is not None else "–"
        lines.append(f"{row['arm']}: test/acc {acc} % over {row['seeds']} seed(s)")
        if row["arm"] == "best" and row["diff_vs_reference"] is not None:
            ci = f" [{row['ci_low'] * 100:+.2f}, {row['ci_high'] * 100:+.2f}]" if row["ci_low"] is not None else ""
            lines.append(
                f"best - base: {row['diff_vs_reference'] * 100:+.2f} points{ci} (95% paired t-interval): "
                f"{row['verdict']}"
            )
    rundir.atomic_write_text(
        search.output_dir / "confirm.md",
        "\n".join(
            [
                f"# Confirmation of search {search.name}",
                "",
                *[f"- {line}" for line in lines],
                "",
                "Full report: [confirm/report.md](confirm/report.md)",
                "",
            ]
        ),
    )
    return result, lines
