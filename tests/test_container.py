"""The container image (Dockerfile), built and run with podman: the app and its MLflow server on a
volume, any verb as a one-off container, models that outlive their container, a clean stop.

Skipped without podman outside CI (MLP_LAB_REQUIRE_REAL_DATA=1 or CI set: a failure, as a missing
dataset is); .ci/run sets podman up. The image is tagged localhost/mlp-lab:test and kept, so that a
rerun builds from its layer cache (`podman rmi localhost/mlp-lab:test` frees it); the containers
and the volume the test makes are removed by their ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from app_helpers import CHROMIUM, launch_chromium
from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/mlp-lab:test"
MODEL = "container-fashion"  # the registered model the test trains in one container and finds in another
STOP_LIMIT_S = 10.0
SIGKILLED = 137  # 128 + 9: what a container that ignored SIGTERM until the timeout exits with


def required() -> bool:
    return os.environ.get("MLP_LAB_REQUIRE_REAL_DATA") == "1" or bool(os.environ.get("CI"))


def skip_or_fail(why: str):
    if required():
        pytest.fail(f"{why} (required in CI)")
    pytest.skip(why)


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def build_flags() -> list[str]:
    """podman's flags: the docker image format (podman's default OCI format drops HEALTHCHECK),
    and what the project's machines need to reach PyPI from a build (the host's network and CA
    bundle: ../shared/container/README.md); harmless on another Linux host."""
    flags = ["--format", "docker", "--network", "host"]
    if Path("/etc/ssl/certs").is_dir():
        flags += ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]
    return flags


@pytest.fixture(scope="module")
def image():
    if shutil.which("podman") is None:
        skip_or_fail("podman is not installed (bash ../shared/container/setup-podman.sh, or apt-get install podman)")
    started = time.monotonic()
    result = subprocess.run(
        ["podman", "build", *build_flags(), "-t", IMAGE, str(REPO)], capture_output=True, text=True, timeout=2400
    )
    if result.returncode != 0:
        raise AssertionError(f"podman build exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}")
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    print(f"\nimage {IMAGE}: built in {time.monotonic() - started:.0f} s, {size / 1e9:.2f} GB")
    return IMAGE


@pytest.fixture
def volume():
    name = f"mlp-lab-test-{uuid.uuid4().hex[:12]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def one_off(image: str, volume: str, *command: str) -> str:
    """`podman run IMAGE COMMAND` on the volume; its stdout. The container is removed by its id."""
    cid = podman("create", "-v", f"{volume}:/data", image, *command).stdout.strip()
    try:
        result = podman("start", "--attach", cid, timeout=600, check=False)
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        return result.stdout
    finally:
        podman("rm", "--force", cid, check=False)


def wait_until_healthy(cid: str, urls: list[str], timeout: float = 240.0) -> float:
    """Seconds until every URL answers 200; fails early, with the container's log, if it exits."""
    started = time.monotonic()
    pending = list(urls)
    while pending:
        try:
            with urllib.request.urlopen(pending[0], timeout=5) as response:
                assert response.status == 200
            pending.pop(0)
            continue
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        state = podman("inspect", cid, "--format", "{{.State.Running}}").stdout.strip()
        if state != "true" or time.monotonic() - started > timeout:
            logs = podman("logs", cid, check=False)
            raise AssertionError(
                f"{pending[0]} never answered (running: {state}):\n{(logs.stdout + logs.stderr)[-3000:]}"
            )
        time.sleep(0.25)
    return time.monotonic() - started


@contextmanager
def served(image: str, volume: str):
    """The image's own command (app + MLflow) on the volume, its two ports published on free
    127.0.0.1 ports; yields (container id, app address, MLflow address) once both answer."""
    app_port, mlflow_port = free_port(), free_port()
    cid = podman(
        "run", "-d", "-p", f"127.0.0.1:{app_port}:8501", "-p", f"127.0.0.1:{mlflow_port}:5000",
        "-v", f"{volume}:/data", image,
    ).stdout.strip()  # fmt: skip
    try:
        app, mlflow = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{mlflow_port}"
        took = wait_until_healthy(cid, [f"{app}/_stcore/health", f"{mlflow}/health"])
        print(f"container {cid[:12]}: app and MLflow healthy {took:.1f} s after `podman run`")
        yield cid, app, mlflow
    finally:
        podman("rm", "--force", "--time", "0", cid, check=False)


def stop_in_time(cid: str) -> float:
    """`podman stop` (SIGTERM, SIGKILL after 10 s): seconds taken; the container must have ended
    on the SIGTERM, both servers stopped, never killed."""
    started = time.monotonic()
    podman("stop", "--time", str(int(STOP_LIMIT_S)), cid)
    took = time.monotonic() - started
    state = json.loads(podman("inspect", cid, "--format", "{{json .State}}").stdout)
    logs = podman("logs", cid, check=False)
    print(f"container {cid[:12]}: stopped in {took:.1f} s, exit code {state['ExitCode']}")
    assert state["ExitCode"] != SIGKILLED and not state.get("OOMKilled"), (state, logs.stderr[-2000:])
    assert state["ExitCode"] == 128 + 15, state  # mlp-lab app's own exit on SIGTERM, through tini
    assert took <= STOP_LIMIT_S, f"stop took {took:.1f} s"
    assert "Traceback" not in logs.stdout + logs.stderr, logs.stderr[-3000:]
    return took


def test_the_mlflow_page_reaches_a_wildcard_bound_server_by_the_name_the_browser_used():
    from mlp_lab.app.mlflow_page import browser_address

    assert browser_address("http://0.0.0.0:5000", "http://lab.example.org:8501/?page=MLflow") == (
        "http://lab.example.org:5000"
    )
    assert browser_address("http://[::]:5000", "http://[::1]:8501/") == "http://[::1]:5000"
    assert browser_address("http://0.0.0.0:5000", None) == "http://0.0.0.0:5000"  # no page URL: as served
    assert browser_address("http://127.0.0.1:5000", "http://localhost:8501/") == "http://127.0.0.1:5000"


def test_a_wildcard_bound_mlflow_ui_may_be_framed_by_the_app_under_any_name(tmp_path):
    pytest.importorskip("mlflow")
    from mlp_lab.tracking.store import ui_command

    command, address = ui_command(tmp_path / "runs", 5000, framed_by="http://0.0.0.0:8501", host="0.0.0.0")
    assert command[command.index("--host") + 1] == "0.0.0.0" and address == "http://0.0.0.0:5000"
    assert "frame-ancestors http://*:8501 https://*:8501" in command[command.index("--uvicorn-opts") + 1]
    assert "--cors-allowed-origins" not in command  # MLflow's defaults: loopback and private addresses
    command, address = ui_command(tmp_path / "runs", 5000, framed_by="http://127.0.0.1:8501")
    assert command[command.index("--host") + 1] == "127.0.0.1" and address == "http://127.0.0.1:5000"
    assert "frame-ancestors http://127.0.0.1:8501'" in command[command.index("--uvicorn-opts") + 1]
    assert command[command.index("--cors-allowed-origins") + 1] == "http://127.0.0.1:8501"


def draw_page_models(app: str) -> list[str]:
    """The Draw page's model picker in Chromium: the labels of every model it offers."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)
            page.goto(f"{app}/?page=Draw")
            # The title names what the picked model classifies (a FashionMNIST model, which takes uploads
            # and no canvas: "Classify a piece of clothing").
            page.get_by_role("heading", name=re.compile(r"^(Draw|Classify) an? ")).wait_for()
            page.get_by_test_id("stSelectbox").filter(has_text="Model").click()
            options = page.get_by_role("option")
            options.first.wait_for()
            return options.all_inner_texts()
        finally:
            browser.close()


@pytest.mark.slow
def test_the_image_serves_the_app_and_mlflow_keeps_models_on_its_volume_and_stops_cleanly(image, volume):
    # A fresh volume: both servers come up, as the image's non-root user, and the health check passes.
    assert podman("image", "inspect", image, "--format", "{{.Config.User}}").stdout.strip() == "mlp"
    with served(image, volume) as (cid, app, _):
        assert podman("exec", cid, "id", "-u").stdout.strip() == "1000"
        assert podman("healthcheck", "run", cid, check=False).returncode == 0
        with urllib.request.urlopen(f"{app}/?page=Draw", timeout=30) as response:
            assert response.status == 200
        stop_in_time(cid)

    # Any verb as a one-off container on the same volume: a 1-epoch model on Debian's FashionMNIST,
    # tracked and registered in the store the servers use (/data/runs/mlflow.db).
    one_off(image, volume, "mlp-lab", "run", "baseline", "--set", "train.epochs=1", "--threads", "1",
            "--run-dir", "runs/container-model", "--track")  # fmt: skip
    one_off(image, volume, "mlp-lab", "register", "runs/container-model", "--name", MODEL, "--alias", "champion")

    # A new container on the volume: the app offers the run and the registered alias; the MLflow
    # server's registry holds the version.
    with served(image, volume) as (cid, app, mlflow):
        offered = draw_page_models(app)
        assert any(label.startswith("container-model") for label in offered), offered
        assert f"models:/{MODEL}@champion (registered)" in offered, offered
        with urllib.request.urlopen(f"{mlflow}/api/2.0/mlflow/registered-models/get?name={MODEL}", timeout=30) as r:
            registered = json.load(r)["registered_model"]
        assert [a["alias"] for a in registered.get("aliases", [])] == ["champion"], registered
        assert registered["latest_versions"][0]["status"] == "READY", registered
        stop_in_time(cid)

    # After two stops, the store is whole: a third container reads the run and the model from it.
    listed = json.loads(one_off(image, volume, "mlp-lab", "models", "--json"))
    assert any(row["name"] == MODEL for row in listed), listed
