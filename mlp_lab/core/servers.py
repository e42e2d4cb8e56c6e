"""Servers a command starts and owns (`mlp-lab ui`, `mlp-lab app`): no torch, no extras.

A server runs as a child in a process group of its own, so that everything it starts (the MLflow
server runs uvicorn as a child of its own) is stopped with it. The command that started it
stops that group on SIGINT, SIGTERM or SIGHUP, waits for it, and exits as `run` does (128 + the
signal: 130, 143, 129), so a server never outlives its command with parent 1. (A SIGKILL of the
command cannot be caught: that alone can still leave its server running.)
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlp_lab.core.errors import MLPLabError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 8.0  # the servers' time to stop on SIGTERM before they are killed: inside docker stop's 10 s


class PortTaken(MLPLabError):
    """The port a server was asked to bind is in use."""


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Fail in one line if something already listens on HOST:PORT (a server started on it would
    die after its URL was printed). SO_REUSEADDR so that a socket in TIME_WAIT is not a false alarm."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"{flag} {port}: {host}:{port} is already in use; stop what serves it or choose another {flag}"
                ) from None
            raise MLPLabError(f"{flag} {port}: cannot bind {host}:{port} ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class Server:
    """One server to start: its command line and environment (None: this process's)."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str] | None = None
    quiet: bool = False  # its standard output discarded (Streamlit prints its own URLs)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the group we made for it: its pid is the group id)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _reap(process: subprocess.Popen, deadline: float) -> None:
    """Wait for the server's group until `deadline` (time.monotonic); SIGKILL to whatever of it is left."""
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    # The leader may be gone while a child of its (uvicorn under `mlflow server`) still stops.
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def serve(servers: Sequence[Server]) -> int:
    """Start `servers` and block until the last one exits or a stop signal arrives; every server
    (and whatever it started) is stopped before this returns. Returns the exit code: the last
    server's own, or 128 + the signal."""
    received: list[int] = []

    def handler(signum, frame):  # noqa: ARG001
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    processes: list[subprocess.Popen] = []
    try:
        for server in servers:
            if received:
                break
            processes.append(
                subprocess.Popen(
                    list(server.command),
                    env=None if server.env is None else dict(server.env),
                    stdout=subprocess.DEVNULL if server.quiet else None,
                    # its own session and process group: stopped as a whole, and a Ctrl-C at the
                    # terminal reaches it only through us, once
                    start_new_session=True,
                )
            )
        while not received and processes:
            # Short waits so that a signal handled in Python is acted on promptly.
            try:
                code = processes[-1].wait(timeout=0.2)
                return code
            except subprocess.TimeoutExpired:
                if any(p.poll() is not None for p in processes[:-1]):
                    return next(p.returncode for p in processes[:-1] if p.returncode is not None) or 1
        return 128 + received[0] if received else 0
    finally:
        # Every server is told at once and they share one grace period: the whole stop fits
        # within `docker stop`'s 10 s however many servers there are.
        for process in reversed(processes):
            _terminate(process)
        deadline = time.monotonic() + GRACE_S
        for process in reversed(processes):
            _reap(process, deadline)
        for sig, old in previous.items():
            signal.signal(sig, old)
