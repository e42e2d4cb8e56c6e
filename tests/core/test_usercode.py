"""Importing a user's target against its recorded hash, finding a copy by hash where the file is
gone, and an exception in the user's code shown with their frames only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mlp_lab.core import usercode
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.usercode import CodeChanged, UserCodeError, call_user_code, load_target, sha256_of

CODE = textwrap.dedent(
    """
    def helper(x):
        return 1 / x


    def make(x=1):
        return helper(x)


    VALUE = 3
    """
)


def test_a_target_loads_and_a_changed_file_is_refused(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(CODE)
    recorded = sha256_of(path)
    make = load_target("make", file=path, sha256=recorded, key="model.target")
    assert make(2) == 0.5
    path.write_text(CODE + "# edited\n")
    with pytest.raises(CodeChanged) as exc:
        load_target("make", file=path, sha256=recorded, key="model.target")
    assert str(exc.value).startswith(
        f"model.target: {path} changed since the run recorded it (sha256 {recorded[:12]}..."
    )
    assert str(exc.value).endswith("restore that version, or train again with this one")


def test_a_gone_file_is_found_by_hash_in_the_code_dirs(tmp_path, monkeypatch):
    path = tmp_path / "project" / "mine.py"
    path.parent.mkdir()
    path.write_text(CODE)
    recorded = sha256_of(path)
    shipped = tmp_path / "shipped" / "code"
    shipped.mkdir(parents=True)
    (shipped / "mine.py").write_text(CODE)
    path.unlink()
    with pytest.raises(CodeChanged, match="is gone"):
        load_target("make", file=path, sha256=recorded, key="model.target")
    monkeypatch.setenv("MLP_LAB_CODE_DIRS", str(tmp_path / "shipped"))  # a copy one folder down
    assert load_target("make", file=path, sha256=recorded, key="model.target")(4) == 0.25
    (shipped / "mine.py").write_text(CODE + "# another version\n")
    with pytest.raises(CodeChanged):  # a copy with another hash is not the recorded code
        load_target("make", file=path, sha256=recorded, key="model.target")


def test_a_missing_name_lists_what_the_file_has(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(CODE)
    with pytest.raises(MLPLabError) as exc:
        load_target("Make", file=path, key="model.target")
    assert str(exc.value) == f"model.target: {path} has no 'Make'; it has: helper, make"
    with pytest.raises(MLPLabError) as exc:
        load_target("VALUE", file=path, key="model.target")
    assert str(exc.value) == f"model.target: {path}:VALUE is a int, not a class or function"


def test_an_exception_in_user_code_shows_only_their_frames(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(CODE)
    make = load_target("make", file=path, key="model.target")
    with pytest.raises(UserCodeError) as exc:
        call_user_code(make, 0, what="model.target")
    assert str(exc.value) == f"model.target: {path}:3: ZeroDivisionError: division by zero"
    shown = exc.value.user_traceback
    assert shown.count('File "') == 2 and shown.count(str(path)) == 2  # make, then helper: no frame of ours
    assert "mlp_lab" not in shown and shown.rstrip().endswith("ZeroDivisionError: division by zero")


def test_an_error_at_import_names_the_file(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import math\n\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(UserCodeError) as exc:
        load_target("make", file=path, key="model.target")
    assert str(exc.value) == f"model.target: importing broken.py: {path}:3: RuntimeError: no GPU here"


def test_errors_not_in_user_code_stay_ours():
    def ours():
        raise KeyError("x")

    assert usercode.user_code_error(KeyError("x")) is None
    with pytest.raises(KeyError):
        call_user_code(ours)


def test_the_cli_prints_the_users_frames_and_one_error_line(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self, **kwargs):\n"
        "        super().__init__()\n        raise ValueError('width must be even')\n"
    )
    (tmp_path / "c.yaml").write_text("model: {target: net.py:Net}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mlp_lab", "summary", str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Traceback (your code's frames only):"
    assert lines[-1].startswith("error: ") and f"{tmp_path / 'net.py'}:7: ValueError: width must be even" in lines[-1]
    assert "mlp_lab" not in "\n".join(lines[:-1]) and "site-packages" not in proc.stderr
