"""End-to-end CLI: typer's CliRunner for commands, a subprocess for start-up cost."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest
import typer
import yaml
from conftest import write_config
from typer.testing import CliRunner

from mlp_lab.cli import app

runner = CliRunner()


def test_run_trains_and_reports_test_accuracy(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}))
    result = runner.invoke(app, ["run", str(path), "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    assert "epoch   2/2" in result.output and "test/acc" in result.output and str(run_dir) in result.output
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3


def test_run_never_overwrites_an_existing_run(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}))
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    second = runner.invoke(app, ["run", str(path)])
    assert second.exit_code == 0
    assert "exists; writing this run to" in second.output
    assert (tmp_path / "runs" / "tiny-2" / "summary.json").is_file()


def test_validate_prints_the_resolved_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: v\n")
    result = runner.invoke(app, ["validate", str(path), "--set", "model.dropout=0.5"])
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"]["dropout"] == 0.5 and resolved["train"]["optimizer"]["name"] == "adam"


def test_invalid_config_exits_2_with_every_error_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  dropout: 1.0\ntrain:\n  epochs: 0\n")
    for verb in ("validate", "run"):
        result = runner.invoke(app, [verb, str(path), "--set", "train.optimizer.lr=0"])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_resume_a_finished_run_does_not_train_again(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}))
    runner.invoke(app, ["run", str(path)])
    result = runner.invoke(app, ["run", "--resume", str(tmp_path / "runs" / "tiny")])
    assert result.exit_code == 0 and "epoch" not in result.output.split("done:")[0].split("->")[-1]


def test_tensorboard_events_hold_scalars_and_hparams(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = tiny_config(
        train={"epochs": 3, "batch_size": 32, "device": "cpu"},
        output={"dir": str(tmp_path / "runs"), "tensorboard": True},
    )
    path = write_config(tmp_path, cfg)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    events = EventAccumulator(str(tmp_path / "runs" / "tiny"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "val/loss", "train/acc", "val/acc", "lr", "test/acc"):
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2, 3]
    summary = yaml.safe_load((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert (
        events.Scalars("test/acc")[-1].value == summary["test/acc"].__float__()
        or abs(events.Scalars("test/acc")[-1].value - summary["test/acc"]) < 1e-6
    )
    content = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in content and "_hparams_/session_start_info" in content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"test/acc", "test/loss"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.hidden_sizes"].string_value == "[32]"
    assert start.hparams["train.optimizer.lr"].number_value == 1e-3


def test_help_lists_the_verbs_in_their_order():
    from typer.main import get_command

    assert list(get_command(app).list_commands(None)) == [
        "run",
        "validate",
        "compare",
        "report",
        "suite",
        "search",
        "list",
        "data",
        "summary",
        "evaluate",
        "predict",
        "track",
        "register",
        "models",
        "ui",
        "app",
        "bench",
        "init",
    ]


def test_help_does_not_import_torch_and_python_m_works():
    code = (
        "import sys\nfrom mlp_lab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "run" in result.stdout and result.stdout.strip().endswith("NO-TORCH")
    module = subprocess.run([sys.executable, "-m", "mlp_lab", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and "validate" in module.stdout


def _commands():
    """(argv, click command) of `mlp-lab` and of every command under it, as docs/generate.py walks them."""
    from typer.main import get_command

    root = get_command(app)
    ctx = typer.Context(root, info_name="mlp-lab")
    yield [], root
    for name in root.list_commands(ctx):
        yield [name], root.get_command(ctx, name)


# Options whose absence means "nothing of this" (no override, no extra directory, no resume, no
# alias): they have no default to state. Every other option shows its default in --help.
NOTHING_BY_DEFAULT = {"--set", "--data-dir", "--resume", "--config", "--alias", "--arm", "--json"}
TYPERS_OWN = {"--install-completion", "--show-completion"}


def _shown_by_typer(param) -> bool:
    """Whether typer prints `[default: ...]` for a parameter by itself (its default is not None)."""
    if param.show_default is False or param.default is None or getattr(param, "required", False):
        return False
    return not (getattr(param, "is_flag", False) and param.default is False and not param.secondary_opts)


def test_every_help_renders_its_defaults_and_brackets():
    """rich reads an unescaped `[default: ...]` in a help text as markup and prints nothing of it
    ("torch threads ."): every bracketed text of every parameter and docstring must reach the
    rendered --help, and every `[default:` of the source (typer's own and ours) must be there."""
    import re

    swallowed, counts = [], []
    for argv, command in _commands():
        result = runner.invoke(app, [*argv, "-h"], env={"COLUMNS": "1000"})  # wide: nothing wraps
        assert result.exit_code == 0, (argv, result.output)
        shown = result.stdout
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for bracketed in re.findall(r"\[[^\]\n]*\]", text.replace("\\[", "[")):
                if bracketed not in shown:
                    swallowed.append(f"mlp-lab {' '.join(argv)}: {bracketed}")
        written = sum(text.count("[default:") for text in texts)
        expected = written + sum(_shown_by_typer(p) for p in command.params)
        if shown.count("[default:") != expected:
            counts.append(f"mlp-lab {' '.join(argv)}: {shown.count('[default:')} shown, {expected} expected")
        # What a swallowed text leaves behind: "torch threads ." (the examples' own " ;" are fine).
        stray = re.compile(r"\s[.;,](?=\s|$)")
        if len(stray.findall(shown)) > sum(len(stray.findall(text)) for text in texts):
            swallowed.append(f"mlp-lab {' '.join(argv)}: a stray ' .' (or ' ;', ' ,') where a text went missing")
    assert not swallowed and not counts, "\n".join(swallowed + counts)


def test_every_option_states_its_default():
    """An option left out does something: its --help says what ([default: ...], typer's or ours),
    except where leaving it out means nothing of it (NOTHING_BY_DEFAULT) and for plain on/off flags."""
    silent = []
    for argv, command in _commands():
        for param in command.params:
            if param.param_type_name != "option" or param.required or set(param.opts) & (TYPERS_OWN | {"--help"}):
                continue
            if param.is_flag and param.default is False and not param.secondary_opts:
                continue
            if _shown_by_typer(param) or "[default:" in (param.help or "").replace("\\[", "["):
                continue
            if not set(param.opts) & NOTHING_BY_DEFAULT:
                silent.append(f"mlp-lab {' '.join(argv)} {param.opts[0]}")
    assert not silent, "options whose --help does not say their default:\n" + "\n".join(silent)


def test_version_and_short_help():
    from mlp_lab import __version__

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout == f"mlp-lab {__version__}\n"
    for argv, _ in _commands():
        short, long = runner.invoke(app, [*argv, "-h"]), runner.invoke(app, [*argv, "--help"])
        assert short.exit_code == long.exit_code == 0 and short.stdout == long.stdout, argv
        assert "-h, --help" in " ".join(short.stdout.split()) or "--help -h" in " ".join(short.stdout.split())


def test_shell_completion_completes_verbs_and_options():
    """typer's completion, as the shell calls it: the console script with its environment set."""
    code = "from mlp_lab.cli import app\napp(prog_name='mlp-lab')"
    for words, cword, expected in (("mlp-lab comp", "1", "compare"), ("mlp-lab run --thr", "2", "--threads")):
        env = {**os.environ, "_MLP_LAB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert result.returncode == 0 and result.stdout.split() == [expected], result
    # The shell named is honoured whatever shell started this test (make runs recipes through sh).
    script = subprocess.run(
        [sys.executable, "-c", code, "--show-completion", "bash"], capture_output=True, text=True, check=True
    )
    assert "complete -o default -F _mlp_lab_completion mlp-lab" in script.stdout
    zsh = subprocess.run(
        [sys.executable, "-c", code, "--show-completion", "zsh"], capture_output=True, text=True, check=True
    )
    assert "compdef _mlp_lab_completion mlp-lab" in zsh.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_show_completion_from_sh_says_how_to_get_a_script():
    """From sh (which has no completion), --show-completion is one line naming what to type, not
    typer's "Shell sh not supported"; `; exit` keeps sh the parent (no exec of the last command)."""
    code = "from mlp_lab.cli import app; app(prog_name='mlp-lab')"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} --show-completion; exit $?"
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.startswith("error: --show-completion: no completion script for sh"), result.stderr
    assert "mlp-lab --show-completion bash" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_users_names_print_as_written_not_as_emoji_codes():
    """rich turns ':boom:' into an emoji; a class named Boom in an error line must stay `bad.py:Boom:`."""
    from mlp_lab.cli.common import err, out

    for console in (out, err):
        with console.capture() as captured:
            console.print("error: model.target: bad.py:Boom: width must be even", highlight=False)
        assert captured.get().strip() == "error: model.target: bad.py:Boom: width must be even"
