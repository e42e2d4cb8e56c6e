"""The benchmark runs end to end on small synthetic data (its timings are not asserted here:
speed targets live in the benchmark's own printed ratios, not in timed tests)."""

import json
import subprocess
import sys

import pytest
from conftest import write_config
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.inspect.bench import roofline_flops, roofline_shapes, run_benchmark
from mlp_lab.training.trainer import num_batches


def test_benchmark_measures_three_pipelines_and_ratios(tiny_config):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    lines = []
    results = run_benchmark(cfg, repeats=1, log=lines.append)
    for key in ("a", "b", "c", "roofline"):
        assert results[key]["seconds"] > 0
    assert results["trainer_over_roofline"] == results["a"]["seconds"] / results["roofline"]["seconds"]
    # one a/r per round, each from the round's own two epochs
    rounds = results["trainer_over_roofline_rounds"]
    assert rounds == [a / r for a, r in zip(results["a"]["all"], results["roofline"]["all"])] and len(rounds) == 1
    assert results["roofline"]["gflops"] > 0
    assert results["a_over_c"] == results["a"]["seconds"] / results["c"]["seconds"]
    assert results["b_over_a"] == results["b"]["seconds"] / results["a"]["seconds"]
    assert results["a"]["peak_rss_mb"] > 0
    assert results["help_startup"]["torch_imported"] is False
    text = "\n".join(lines)
    assert "a/c =" in text and "b/a =" in text and "trainer/roofline =" in text and "peak RSS" in text
    assert f"rounds {rounds[0]:.2f}-{rounds[0]:.2f}" in text
    # (g): without an augment section of its own, the config is timed with mnist_robust.yaml's
    g = results["augmentation"]
    assert g["ratio"] == g["augmented_seconds"] / g["plain_seconds"] and g["augment"]["elastic"] > 0
    assert "(g) augmented epoch" in text


def test_augmentation_bench_times_the_configs_own_augmentation(tiny_config):
    from mlp_lab.data.load import load_data
    from mlp_lab.inspect.bench import time_augmentation

    cfg = tiny_config(data={"augment": {"rotation": 5}}, train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    g = time_augmentation(cfg, load_data(cfg.data), repeats=1)
    assert g["augment"]["rotation"] == 5 and g["augment"]["elastic"] == 0
    assert g["plain_seconds"] > 0 and g["augmented_seconds"] > 0


def test_roofline_counts_the_epochs_unavoidable_matmuls():
    # 11 training examples in batches of 5: the trainer drops a last batch of one, so 5 and 5;
    # 7 val examples make one eval batch.
    train, val = roofline_shapes(5, 11, 7)
    assert train == [5, 5] and len(train) == num_batches(11, 5) and val == [7]
    assert roofline_shapes(5, 12, 7)[0] == [5, 5, 2]
    # 4-3-2: layer MACs 12 and 6; per train example forward 18 + weight grads 18 + the second
    # layer's input grad 6 (the first layer's input grad is not needed); val forward only.
    assert roofline_flops([4, 3, 2], [5, 5, 2], [7]) == 2 * ((18 + 18 + 6) * 12 + 18 * 7)


def test_bench_cli_writes_json(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 64, "device": "cpu"}), "c.yaml")
    result = CliRunner().invoke(app, ["bench", str(path), "--repeats", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["repeats"] == 1


def test_validate_does_not_import_torch(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    code = (
        "import sys\nfrom mlp_lab.cli import app\n"
        f"try:\n    app(['validate', {str(path)!r}])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH") and "name: x" in out


def test_bench_refuses_a_cnn_config_rather_than_timing_an_mlp(tiny_config):
    from mlp_lab.core.errors import MLPLabError

    cfg = tiny_config(model={"kind": "cnn", "conv": {"channels": [4]}, "hidden_sizes": [8]})
    with pytest.raises(MLPLabError, match="model.kind"):
        run_benchmark(cfg, repeats=1, log=lambda _: None)
