"""The benchmark runs end to end on small synthetic data (its timings are not asserted here:
speed targets live in the benchmark's own printed ratios, not in timed tests)."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from conftest import write_config
from mlp_lab.bench import run_benchmark
from mlp_lab.cli import app


def test_benchmark_measures_three_pipelines_and_ratios(tiny_config):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    lines = []
    results = run_benchmark(cfg, repeats=1, log=lines.append)
    for key in ("a", "b", "c"):
        assert results[key]["seconds"] > 0
    assert results["a_over_c"] == results["a"]["seconds"] / results["c"]["seconds"]
    assert results["b_over_a"] == results["b"]["seconds"] / results["a"]["seconds"]
    assert results["a"]["peak_rss_mb"] > 0
    assert results["help_startup"]["torch_imported"] is False
    text = "\n".join(lines)
    assert "a/c =" in text and "b/a =" in text and "peak RSS" in text


def test_bench_cli_writes_json(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 64, "device": "cpu"}), "c.yaml")
    result = CliRunner().invoke(app, ["bench", str(path), "--repeats", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["repeats"] == 1


def test_validate_does_not_import_torch(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    code = ("import sys\nfrom mlp_lab.cli import app\n"
            f"try:\n    app(['validate', {str(path)!r}])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH") and "name: x" in out
