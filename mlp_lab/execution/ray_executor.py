"""Runs on a Ray cluster: the `Executor` interface with each run as a Ray task.

`RayExecutor` is a peer of the serial and process-pool executors: every `RunSpec` becomes a Ray
task that reserves `threads` CPUs (and a GPU when the run is on CUDA), calls the same `run_one`
with the same torch thread count, and writes into the same run directory, so a study made
through Ray has the numbers of ``--jobs 1`` with those threads. Ray does the scheduling, the
retries on a lost node and the cluster; nothing here schedules by hand beyond keeping at most
`jobs` tasks in flight (so a stop has nothing queued to undo). The user's own code (a user
model's file, a python data source's) travels with the tasks, keyed by its content hash, and a
worker unpacks it where `core.usercode.load_target` looks: a node needs the output directory
shared, not the user's files.

Faults:
- a stop (Ctrl-C) writes a stop file into the output directory; the running tasks see it at a
  batch boundary, save last.pt and return "interrupted"; tasks not yet started return nothing.
  A file on the shared output directory needs no live driver-side process to be read, so it
  reaches every node that can still see the runs.
- a node that dies takes its tasks' worker processes with it; Ray re-runs each such task
  (`max_retries`) on another node, where `run_one` finds the run PARTIAL and continues from
  last.pt. The retry recognises its dead attempt by the task id in the run's lock file and waits
  for that lock to be released (at once on one host; when the file server expires the lease on
  a network file system) instead of reporting the run BUSY.
- a run locked by a process that is not one of this study's tasks is left to it (BUSY).

`ray_session` starts a local instance on 127.0.0.1 or joins a cluster for the duration of a
command; `check_shared_storage` makes sure every node sees the output directory first.
ray is imported inside the functions that need it: it is the optional ``[ray]`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mlp_lab.core.environ import env_defaults, preserved
from mlp_lab.core.errors import MLPLabError, install_extra
from mlp_lab.core.interrupt import signal_handlers_kept
from mlp_lab.execution.executors import OnOutcome, Throttled, longest_first
from mlp_lab.execution.procedure import RunOutcome, RunSpec, run_one
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.training.context import RunContext

MISSING_EXTRA = f"--backend ray needs the [ray] extra: {install_extra('ray')}"
# For an instance mlp-lab starts itself: every address on the loopback, no usage statistics.
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# How long a retried task waits for the lock its dead attempt held: a network file system
# releases a dead client's lock when its lease expires (NFSv4: 90 s by default).
RETRY_LOCK_WAIT_S = 300.0
STORAGE_CHECK_TIMEOUT_S = 120.0


def require_ray():
    """The ray module, or a one-line MLPLabError naming the extra."""
    try:
        import ray
    except ImportError:
        raise MLPLabError(MISSING_EXTRA) from None
    return ray


def check_ray_installed() -> None:
    """A one-line MLPLabError naming the extra if ray is missing, without importing it: ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, at import, and `ray_session` must set it first."""
    import importlib.util

    if sys.modules.get("ray", False) is None or ("ray" not in sys.modules and importlib.util.find_spec("ray") is None):
        raise MLPLabError(MISSING_EXTRA)


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[str]:
    """Connect this process to Ray for a block and yield the cluster's address.

    With `address` (or $RAY_ADDRESS), join that cluster and only disconnect afterwards. Without,
    start a local instance bound to 127.0.0.1 with `num_cpus` (default: this machine's cores),
    no dashboard and no usage statistics, and shut it down afterwards (a process that imported
    ray before, with its own environment, keeps ray's choice of address). If this process is
    already connected (a notebook, a test), that connection is used and left open.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    # For a local instance, the loopback setting must be in the environment before ray is first
    # imported (it is read once, then) and while the instance starts its processes. Joining a
    # cluster needs the opposite: the driver must be reachable from the other machines, and it
    # must bring the cluster's token when there is one (see `_join_env`).
    # ray.init of a local instance turns token authentication on by exporting RAY_AUTH_MODE for
    # "this process and its children"; the caller's environment is put back as it was.
    with preserved(("RAY_AUTH_MODE",)), env_defaults(_join_env() if address else LOCAL_ENV):
        ray = require_ray()
        if ray.is_initialized():
            yield ray.get_runtime_context().gcs_address
            return
        if address and address != "auto":
            _check_reachable(address)
        try:
            # ray.init sets a SIGTERM handler of its own (sys.exit) and ray.shutdown leaves it:
            # the caller's stay, so a SIGTERM still stops a study at a batch boundary and
            # nothing outlives the session.
            with signal_handlers_kept():
                _init(ray, address, num_cpus)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise MLPLabError(f"could not connect to {where}: {reason}{_auth_hint() if address else ''}") from None
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            with signal_handlers_kept():
                ray.shutdown()


def _init(ray, address: str | None, num_cpus: int | None) -> None:
    """ray.init: join the cluster at `address`, or start a local instance of `num_cpus` CPUs."""
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    from mlp_lab.training.runtime import available_cores

    ray.init(
        address="local",
        num_cpus=num_cpus or available_cores(),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
    )


def token_source() -> str | None:
    """Where this machine holds a Ray cluster token (Ray's own places), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).is_file():
        return path
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _join_env() -> dict[str, str]:
    """The driver's environment for joining a cluster. `ray start --head` (Ray 2.60) turns token
    authentication on whenever the head holds a token, and a driver then joins only with
    RAY_AUTH_MODE=token; a driver in token mode also joins a cluster without authentication. So
    with a token at hand, token mode is the default; the user's own RAY_AUTH_MODE wins."""
    return {"RAY_AUTH_MODE": "token"} if token_source() else {}


def _auth_hint() -> str:
    """What to check when joining failed: usually the cluster's token authentication."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode == "disabled":
        return (
            "; RAY_AUTH_MODE=disabled is set here: if the cluster uses token authentication, "
            "unset it and put the cluster's token here"
        )
    source = token_source()
    if source:
        return (
            f"; if the cluster uses token authentication, it refused the token in {source}: put the "
            f"head node's token (`ray get-auth-token` there) in ~/.ray/auth_token or RAY_AUTH_TOKEN"
        )
    return (
        '; if the cluster uses token authentication (`ray start` said "Token authentication is enabled"), '
        "this machine needs its token: copy the output of `ray get-auth-token` on the head node to "
        "~/.ray/auth_token here, or set RAY_AUTH_TOKEN"
    )


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail in one line if nothing listens at HOST:PORT: ray.init would retry for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: let Ray interpret it
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MLPLabError(
            f"could not connect to the Ray cluster at {address}: {exc.strerror or exc} "
            f"(is `ray start --head` running there?)"
        ) from None


def _probe_storage(token_path: str, token: str) -> str | None:
    """On one node: read the driver's token, write this node's own; None or what went wrong."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        seen = Path(token_path).read_text()
    except OSError as exc:
        return f"cannot read {token_path} ({type(exc).__name__})"
    if seen != token:
        return f"{token_path} holds other content than the driver wrote"
    try:
        rundir.atomic_write_text(f"{token_path}.{node}", node)
    except OSError as exc:
        return f"cannot write into {Path(token_path).parent} ({type(exc).__name__}: {exc.strerror})"
    return None


def check_shared_storage(directory: str | Path, timeout: float = STORAGE_CHECK_TIMEOUT_S) -> None:
    """Fail fast, with one line, unless every alive Ray node with CPUs can read and write `directory`.

    The driver writes a token file; one task pinned to each node reads it and writes the node's
    own file beside it; the driver reads those back. The tasks reserve no CPU, so the check runs
    even on a busy cluster.
    """
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    directory = Path(os.path.abspath(directory))
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    token_path = directory / f".mlp-lab-storage-check-{token}"
    rundir.atomic_write_text(token_path, token)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    probe = ray.remote(_probe_storage)
    try:
        refs = {
            probe.options(
                num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(token_path), token): n
            for n in nodes
        }
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        problems = []
        for ref in late:
            ray.cancel(ref, force=True)
            problems.append(f"node {refs[ref]['NodeManagerAddress']}: no answer in {timeout:.0f} s")
        for ref in ready:
            node = refs[ref]
            try:
                problem = ray.get(ref)
            except ray.exceptions.RayError as exc:
                problem = f"the check task failed ({type(exc).__name__})"
            back = token_path.with_name(f"{token_path.name}.{node['NodeID']}")
            if problem is None and not (back.exists() and back.read_text() == node["NodeID"]):
                problem = "the file it wrote is not visible here"
            if problem:
                problems.append(f"node {node['NodeManagerAddress']} ({node['NodeID'][:8]}): {problem}")
        if problems:
            more = f" (and {len(problems) - 1} more node(s))" if len(problems) > 1 else ""
            raise MLPLabError(
                f"{directory} is not shared between this driver and the Ray workers: {problems[0]}{more}; "
                f"put output.dir on a file system every node mounts at the same path"
            )
    finally:
        for path in directory.glob(f"{token_path.name}*"):
            path.unlink(missing_ok=True)


def shipped_code(specs: Sequence[RunSpec]) -> dict[str, tuple[str, bytes]]:
    """The user code the runs of `specs` import (a user model's file, a python data source's),
    as ``{sha256: (file name, bytes)}``: it travels with each task, so a node that does not have
    the user's files runs them all the same. A module target (package.module:NAME) does not
    travel: it must be installed on every node."""
    from mlp_lab.config.schema import config_to_dict
    from mlp_lab.config.targets import recorded_code
    from mlp_lab.core.usercode import code_bytes

    bundle: dict[str, tuple[str, bytes]] = {}
    for spec in specs:
        for key, target, sha256 in recorded_code(config_to_dict(spec.config)):
            if target.file is not None and sha256 not in bundle:
                bundle[sha256] = (target.file.name, code_bytes(target.file, sha256, f"{spec.label}: {key}"))
    return bundle


def code_cache() -> Path:
    """Where a worker unpacks shipped code: one folder per content hash, under this node's temp."""
    import tempfile

    return Path(tempfile.gettempdir()) / "mlp-lab-code"


def _ray_task(
    spec: RunSpec,
    context: RunContext,
    force: bool,
    threads: int,
    stop_path: str,
    task_key: str,
    code: dict[str, tuple[str, bytes]] | None = None,
) -> RunOutcome | None:
    """One run inside a Ray worker: `run_one` with `threads` torch threads, the shipped user code
    unpacked where `load_target` looks for it; None if stopped before it began."""
    from mlp_lab.core.usercode import unpack_code
    from mlp_lab.training.runtime import torch_threads

    if code:
        unpack_code(code, code_cache())
    stop = Throttled(lambda: os.path.exists(stop_path))
    if stop():
        return None
    lock = rundir.RunLock(spec.run_dir)
    deadline = time.monotonic() + RETRY_LOCK_WAIT_S
    held, note = lock.peek()
    retry = note == task_key  # an earlier attempt of this very task took the lock: it died
    while held and retry and time.monotonic() < deadline:
        if stop():
            return None
        time.sleep(1.0)
        held, _ = lock.peek()
    with torch_threads(threads):
        # A retry never deletes what its dead attempt trained, even under --force: it continues it.
        return run_one(
            spec,
            context.but(log=functools.partial(print, flush=True), stop=stop),
            force=force and not retry,
            lock_note=task_key,
        )


def _absolute(spec: RunSpec) -> RunSpec:
    # Workers run in their own working directory, maybe on another machine. abspath, not
    # resolve: a shared mount's path is kept as the user wrote it, not turned into this node's.
    return dataclasses.replace(spec, run_dir=Path(os.path.abspath(spec.run_dir)))


class RayExecutor:
    """Each run a Ray task on the connected cluster, longest first, `threads` CPUs and torch threads each.

    At most `jobs` tasks are in flight (default: as many as the cluster's CPUs hold at `threads`
    each, read when first needed). Use it inside `ray_session` (or after `ray.init`); `run`
    opens a session of its own otherwise. Before the first run into an output directory,
    `check_shared_storage` checks that every node sees it. A task that loses its worker (a dead
    node) is re-run up to `max_retries` times and continues from last.pt.
    """

    def __init__(
        self,
        threads: int | None = None,
        jobs: int | None = None,
        *,
        address: str | None = None,
        max_retries: int = 5,
        context: RunContext | None = None,
    ):
        self.threads = threads or 1
        self._jobs = jobs
        self.address, self.max_retries = address, max_retries
        self.context = context or RunContext()
        self._checked: set[str] = set()

    @property
    def jobs(self) -> int:
        """Tasks in flight at once: the given number, else the cluster's CPUs // threads."""
        if self._jobs is None:
            ray = require_ray()
            self._jobs = max(1, int(ray.cluster_resources().get("CPU", 0)) // self.threads)
        return self._jobs

    def _gpus_for(self, spec: RunSpec, cluster_gpus: float) -> int:
        device = spec.config.train.device
        if device == "cuda" and cluster_gpus < 1:
            raise MLPLabError(f"{spec.label}: train.device is 'cuda' but the Ray cluster has no GPU")
        return 1 if device == "cuda" or (device == "auto" and cluster_gpus >= 1) else 0

    def run(
        self,
        specs: Sequence[RunSpec],
        on_outcome: OnOutcome,
        *,
        data_dirs: Sequence[str] = (),
        force: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Run `specs` as Ray tasks and report each outcome as it arrives (see `Executor`)."""
        ray = require_ray()
        if not specs:
            return
        with contextlib.nullcontext() if ray.is_initialized() else ray_session(self.address):
            self._run(ray, [_absolute(s) for s in specs], on_outcome, data_dirs, force, stop)

    def _run(
        self,
        ray,
        specs: list[RunSpec],
        on_outcome: OnOutcome,
        data_dirs: Sequence[str],
        force: bool,
        stop: Callable[[], bool] | None,
    ) -> None:
        from mlp_lab.data.locate import DATA_ENV

        # The driver's $MLP_LAB_DATA travels with the tasks, as data dirs: a worker started by a
        # cluster's raylet does not have the driver's environment.
        env_dirs = [p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
        dirs = tuple(os.path.abspath(d) for d in (*data_dirs, *env_dirs))
        resources = ray.cluster_resources()
        widest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if widest < self.threads:
            raise MLPLabError(
                f"no Ray node has {self.threads} CPUs for a run's --threads {self.threads} "
                f"(the largest has {widest:g}); lower --threads"
            )
        gpus = [self._gpus_for(s, resources.get("GPU", 0)) for s in specs]
        root = Path(os.path.commonpath([str(s.run_dir.parent) for s in specs]))
        if str(root) not in self._checked:
            check_shared_storage(root)
            self._checked.add(str(root))
        stop_path = root / f".mlp-lab-stop-{uuid.uuid4().hex}"
        # A task's worker has its node's environment, not the driver's: what the context says the
        # workers need (the driver's choice of MLflow store, from the service layer) travels with
        # each task, so that every run is logged where the driver's are.
        task = ray.remote(runtime_env={"env_vars": dict(self.context.worker_env)})(_ray_task)
        context = self.context.for_workers().but(data_dirs=dirs)
        # Stored once in the object store; each task gets it by reference, not a copy per task.
        code = shipped_code(specs)
        code_ref = ray.put(code) if code else None
        queue, pending, stopping = longest_first(specs), {}, False
        try:
            while queue or pending:
                if stop is not None and stop() and not stopping:
                    stopping = True
                    queue.clear()
                    # The running tasks stop at their next batch boundary and save last.pt.
                    rundir.atomic_write_text(stop_path, "stop\n")
                while queue and len(pending) < self.jobs:
                    index = queue.pop(0)
                    ref = task.options(
                        num_cpus=self.threads,
                        num_gpus=gpus[index],
                        max_retries=self.max_retries,
                        retry_exceptions=False,
                        name=f"mlp-lab {specs[index].label}",
                    ).remote(specs[index], context, force, self.threads, str(stop_path), uuid.uuid4().hex, code_ref)
                    pending[ref] = index
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        spec = specs[index]
                        if stopping:  # e.g. a terminal's Ctrl-C reached the worker too: last.pt is kept
                            outcome = RunOutcome(spec.label, spec.status(), "interrupted", error="interrupted")
                        else:  # retries used up: a worker died each time
                            outcome = RunOutcome(
                                spec.label,
                                RunStatus.FAILED,
                                "trained",
                                error=f"lost its Ray worker {self.max_retries + 1} times "
                                f"({type(exc).__name__}); now {spec.status()}: run the command again",
                            )
                    if outcome is not None:
                        on_outcome(index, outcome)
        finally:
            if pending:  # left by an exception (a second Ctrl-C): let the tasks save and stop
                rundir.atomic_write_text(stop_path, "stop\n")
                ray.wait(list(pending), num_returns=len(pending), timeout=30)
            stop_path.unlink(missing_ok=True)
