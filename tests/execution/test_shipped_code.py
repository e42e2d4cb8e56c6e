"""User code that travels with a run: a Ray task carries the user's files (keyed by content hash)
and its worker unpacks them where `load_target` looks; a config whose file is gone validates
only where a copy with the recorded hash is at hand; a process pool runs a user's model."""

from __future__ import annotations

import shutil

import pytest
from conftest import metrics_without_timing
from user_code_helpers import user_raw_config, write_user_net, write_user_study

from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import config_to_dict
from mlp_lab.core import usercode
from mlp_lab.core.errors import ConfigError
from mlp_lab.core.usercode import CodeChanged, load_target, unpack_code
from mlp_lab.execution.procedure import RunSpec
from mlp_lab.execution.ray_executor import shipped_code


@pytest.fixture
def code_dirs(monkeypatch):
    """No code directories but those a test adds (the list is module state of core.usercode)."""
    monkeypatch.setattr(usercode, "CODE_DIRS", [])
    monkeypatch.delenv("MLP_LAB_CODE_DIRS", raising=False)
    return usercode.CODE_DIRS


def _spec(config, tmp_path) -> RunSpec:
    return RunSpec("narrow seed 0", config, tmp_path / "runs" / "narrow" / "seed-0")


def test_a_worker_without_the_users_file_runs_the_shipped_copy(tiny_config, tmp_path, code_dirs):
    net = write_user_net(tmp_path / "project", str(tmp_path))
    config = validate_config(user_raw_config(tiny_config(), f"{net}:Net", hidden=4), "user.yaml")
    bundle = shipped_code([_spec(config, tmp_path), _spec(config, tmp_path)])
    assert bundle == {config.model.code_sha256: ("my_net.py", net.read_bytes())}  # once, not per run

    shutil.rmtree(tmp_path / "project")  # the worker's node has no such file
    raw = config_to_dict(config)
    with pytest.raises(ConfigError, match="model.target: .*my_net.py: no such file"):
        validate_config(raw, "config.yaml")
    unpack_code(bundle, tmp_path / "cache")
    assert code_dirs == [tmp_path / "cache"]
    assert validate_config(raw, "config.yaml").model.code_sha256 == config.model.code_sha256
    built = load_target("Net", file=net, sha256=config.model.code_sha256, key="model.target")(4, 3, hidden=2)
    assert sum(p.numel() for p in built.parameters()) == 4 * 2 + 2 + 2 * 3 + 3
    assert (tmp_path / "cache" / config.model.code_sha256 / "my_net.py").read_bytes() == bundle[
        config.model.code_sha256
    ][1]


def test_a_copy_of_other_content_is_refused_in_one_line(tiny_config, tmp_path, code_dirs):
    net = write_user_net(tmp_path / "project", str(tmp_path))
    config = validate_config(user_raw_config(tiny_config(), f"{net}:Net"), "user.yaml")
    sha = config.model.code_sha256
    other = tmp_path / "elsewhere" / "my_net.py"
    other.parent.mkdir()
    other.write_text(net.read_text() + "# edited\n")
    net.unlink()
    code_dirs.append(other.parent)
    with pytest.raises(CodeChanged) as caught:
        validate_config(config_to_dict(config), "config.yaml")
    assert str(caught.value) == (
        f"model.target: {net} is gone (the run recorded sha256 {sha[:12]}...): restore the file"
    )
    with pytest.raises(CodeChanged) as tampered:
        unpack_code({sha: ("my_net.py", other.read_bytes())}, tmp_path / "cache")
    assert str(tampered.value) == f"the shipped copy of my_net.py does not have its recorded sha256 {sha[:12]}..."
    assert not (tmp_path / "cache").exists()


def test_built_in_runs_ship_nothing(tiny_config, tmp_path):
    assert shipped_code([_spec(tiny_config(), tmp_path)]) == {}


@pytest.mark.slow
def test_a_process_pool_runs_a_user_model_study_as_jobs_1_does(tiny_config, tmp_path):
    from mlp_lab.execution.executors import ProcessPoolExecutor, SerialExecutor
    from mlp_lab.studies.ablation import compare, load_study, plan
    from mlp_lab.training.context import RunContext

    base = tiny_config()
    results = {}
    for name, executor in (
        ("serial", SerialExecutor(threads=1, context=RunContext(log=lambda _: None))),
        ("pool", ProcessPoolExecutor(2, threads=1, quiet=True)),
    ):
        folder = tmp_path / name
        write_user_net(folder, str(tmp_path))
        study = load_study(write_user_study(folder, base, folder / "runs"))
        outcomes = compare(study, executor=executor, log=lambda _: None).outcomes
        assert [o.status for o in outcomes] == ["done"] * 4, outcomes
        results[name] = {s.label: metrics_without_timing(s.run_dir) for s in plan(study)}
    assert results["pool"] == results["serial"]


def _load_then_unpickle(net: str, sha256: str, data: bytes) -> str:
    """In a spawned worker: load the user's target (as a pool worker does for its run), then unpickle."""
    import pickle
    from pathlib import Path

    load_target("Net", file=Path(net), sha256=sha256, key="model.target")
    return type(pickle.loads(data)).__name__


def test_objects_of_a_users_classes_pickle_here_and_in_a_spawned_worker_that_loaded_them(tiny_config, tmp_path):
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    net = write_user_net(tmp_path / "project", str(tmp_path))
    net.write_text(net.read_text() + "\n\nclass Scaler:\n    def __init__(self, k):\n        self.k = k\n")
    sha = usercode.sha256_of(net)
    scaler = load_target("Scaler", file=net, sha256=sha, key="model.target")(3)
    data = pickle.dumps(scaler)
    assert pickle.loads(data).k == 3
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_load_then_unpickle, str(net), sha, data).result(timeout=120) == "Scaler"


def test_a_file_edited_after_planning_is_not_shipped_in_its_place(tiny_config, tmp_path, code_dirs):
    net = write_user_net(tmp_path / "project", str(tmp_path))
    config = validate_config(user_raw_config(tiny_config(), f"{net}:Net"), "user.yaml")
    sha = config.model.code_sha256
    net.write_text(net.read_text() + "# edited\n")
    with pytest.raises(CodeChanged) as caught:
        shipped_code([_spec(config, tmp_path)])
    assert str(caught.value) == (
        f"narrow seed 0: model.target: {net} changed since the run recorded it (sha256 {sha[:12]}..., now "
        f"{usercode.sha256_of(net)[:12]}...): restore that version, or train again with this one"
    )
