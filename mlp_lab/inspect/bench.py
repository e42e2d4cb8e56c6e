"""Epoch-speed benchmark: mlp-lab's trainer against the tutorial pipeline, the compute floor and the matmul roofline.

All four measure one epoch of train + val on the same data, model and optimizer, in one
process, as the median of several repeats:

(a) mlp-lab: the Trainer's epoch (device tensors, seeded randperm, index slices) + val pass;
(b) tutorial: torchvision dataset with ToTensor/Normalize + DataLoader(batch_size, shuffle=True)
    + a plain loop, and a DataLoader val pass;
(c) floor: the same optimizer steps on one fixed batch, and the same val matmuls;
(r) roofline: only the matmuls one epoch cannot avoid, bare: per train step and Linear layer the
    forward, the weight gradient and (except the first layer's, which nothing needs) the input
    gradient, at the config's batch sizes, plus the val pass forward. trainer/roofline = a/r says
    how far the trainer is from doing nothing but its matmuls.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mlp_lab.config.load import load_config
from mlp_lab.config.schema import AugmentConfig, Config
from mlp_lab.config.section import USER_KIND
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.shipped import shipped_dir
from mlp_lab.data import registry
from mlp_lab.data.locate import locate
from mlp_lab.data.split import split_indices
from mlp_lab.models.registry import build_model
from mlp_lab.training.epoch import num_batches
from mlp_lab.training.evaluate import EVAL_BATCH_SIZE, evaluate
from mlp_lab.training.optim import build_optimizer
from mlp_lab.training.trainer import Trainer


def _median_time(fn: Callable[[], None], repeats: int, sync: Callable[[], None]) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _trainer_epoch(config: Config, data_dirs=()) -> tuple[Trainer, Callable[[], None]]:
    """A Trainer and one epoch of it (train + val), warmed up: first-touch allocations, compile if enabled."""
    trainer = Trainer(config, "/nonexistent-bench-run", data_dirs=tuple(data_dirs))

    def epoch() -> None:
        trainer.train_epoch(None)
        evaluate(trainer.model, trainer.data.val)

    epoch()
    return trainer, epoch


def _mlp_lab_result(trainer: Trainer, median: float, times: list[float]) -> dict[str, Any]:
    return {
        "seconds": median,
        "all": times,
        "peak_rss_mb": _peak_rss_mb(),
        "device": str(trainer.device),
        "steps": trainer.steps_per_epoch,
        "data": trainer.data,
    }


def time_mlp_lab(config: Config, repeats: int, data_dirs=()) -> dict[str, Any]:
    """(a) One epoch of the real Trainer (train + val); also the peak RSS so far."""
    trainer, epoch = _trainer_epoch(config, data_dirs)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    return _mlp_lab_result(trainer, *_median_time(epoch, repeats, sync))


def time_tutorial(config: Config, repeats: int, data, data_dirs=()) -> dict[str, Any]:
    """(b) The tutorial pipeline: per-sample transforms and a DataLoader, same model and optimizer."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    if config.data.source is not None:
        raise MLPLabError(
            f"data.source: the tutorial pipeline (b) reads a registered dataset's files one sample at a time; "
            f"{config.data.name} ({config.data.source.kind}) has no such reader: bench it with data.dataset"
        )
    source = registry.source_for(config.data.dataset)
    if source.tutorial_dataset is None:
        raise MLPLabError(f"{source.name}: has no per-sample dataset for the tutorial pipeline")
    root = locate(config.data, data_dirs)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.info.mean, data.info.std)])
    full = source.tutorial_dataset(source.directory(root), transform)
    train_idx, val_idx = split_indices(len(full), config.data.val_fraction, config.data.split_seed)
    train_loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=config.train.batch_size, shuffle=True)
    val_loader = DataLoader(Subset(full, val_idx.tolist()), batch_size=config.train.batch_size)
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.info.image_shape, data.info.num_classes)
    optimizer = build_optimizer(model.parameters(), config.train.optimizer)

    def epoch() -> None:
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y, label_smoothing=config.train.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                F.cross_entropy(model(x), y)

    median, times = _median_time(epoch, repeats, lambda: None)
    return {"seconds": median, "all": times}


def time_floor(config: Config, repeats: int, data, steps: int, device: torch.device) -> dict[str, Any]:
    """(c) The floor: the trainer's own step (its engine's) on one fixed batch, and the same val matmuls."""
    trainer = Trainer(config, "/nonexistent-bench-run", data=data)
    x, y = data.train.x[: config.train.batch_size], data.train.y[: config.train.batch_size]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def epoch() -> None:
        trainer.model.train()
        for step in range(steps):
            trainer.engine.step(x, y, 0, step)
        evaluate(trainer.model, data.val)

    epoch()
    median, times = _median_time(epoch, repeats, sync)
    return {"seconds": median, "all": times}


def roofline_shapes(batch_size: int, n_train: int, n_val: int) -> tuple[list[int], list[int]]:
    """Batch sizes of one epoch's train steps (the trainer's, last partial batch included) and of its val pass."""
    steps = num_batches(n_train, batch_size)
    train = [min(batch_size, n_train - i * batch_size) for i in range(steps)]
    val = [min(EVAL_BATCH_SIZE, n_val - i) for i in range(0, n_val, EVAL_BATCH_SIZE)]
    return train, val


def roofline_flops(widths: list[int], train_batches: list[int], val_batches: list[int]) -> int:
    """Floating-point operations of the roofline's matmuls (2 per multiply-accumulate)."""
    layer_macs = [a * b for a, b in zip(widths, widths[1:])]
    per_example = sum(layer_macs) * 3 - layer_macs[0]  # forward, weight grad, input grad but the first
    return 2 * (per_example * sum(train_batches) + sum(layer_macs) * sum(val_batches))


def roofline_epoch(widths: list[int], batch_size: int, n_train: int, n_val: int) -> tuple[Callable[[], None], int]:
    """(r) The matmuls of one epoch alone, on random operands of the trainer's shapes and layouts
    (nn.Linear computes x @ W.T; autograd dY.T @ x and dY @ W), into preallocated outputs; and their FLOPs."""
    train_batches, val_batches = roofline_shapes(batch_size, n_train, n_val)
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(b, a, generator=g) for a, b in zip(widths, widths[1:])]
    weight_grads = [torch.empty_like(w) for w in weights]

    def activations(n: int) -> list[torch.Tensor]:
        return [torch.randn(n, width, generator=g) for width in widths]

    acts = {n: activations(n) for n in set(train_batches) | set(val_batches)}
    grads = {n: activations(n) for n in set(train_batches)}

    def epoch() -> None:
        for n in train_batches:
            x, dx = acts[n], grads[n]
            for i, w in enumerate(weights):
                torch.mm(x[i], w.t(), out=x[i + 1])
            for i in reversed(range(len(weights))):
                torch.mm(dx[i + 1].t(), x[i], out=weight_grads[i])
                if i > 0:
                    torch.mm(dx[i + 1], weights[i], out=dx[i])
        for n in val_batches:
            x = acts[n]
            for i, w in enumerate(weights):
                torch.mm(x[i], w.t(), out=x[i + 1])

    epoch()
    return epoch, roofline_flops(widths, train_batches, val_batches)


def time_augmentation(config: Config, data, repeats: int) -> dict[str, Any]:
    """(g) A trainer epoch on augmented batches against the same epoch without: the config's own
    data.augment, or configs/mnist_robust.yaml's where the config has none, timed interleaved."""
    augment = config.data.augment if config.data.augment.active else load_config("mnist_robust").data.augment

    def with_augment(aug: AugmentConfig) -> Config:
        return config.model_copy(update={"data": config.data.model_copy(update={"augment": aug})}, deep=True)

    epochs = []
    for variant in (with_augment(AugmentConfig()), with_augment(augment)):
        trainer = Trainer(variant, "/nonexistent-bench-run", data=data)

        def epoch(trainer: Trainer = trainer) -> None:
            trainer.train_epoch(None)
            evaluate(trainer.model, trainer.data.val)

        epoch()
        epochs.append(epoch)
    (plain, plain_times), (augmented, aug_times) = _interleaved_medians(epochs, repeats)
    return {
        "plain_seconds": plain,
        "augmented_seconds": augmented,
        "all": {"plain": plain_times, "augmented": aug_times},
        "ratio": augmented / plain,
        "augment": augment.model_dump(),
    }


def _interleaved_medians(fns: list[Callable[[], None]], repeats: int) -> list[tuple[float, list[float]]]:
    """Time each function once per round, `repeats` rounds: a burst of load from elsewhere on a
    shared machine then lands on every variant alike, and a ratio of the medians stays fair."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [(statistics.median(t), t) for t in times]


def time_cli_startup(repeats: int = 5) -> dict[str, Any]:
    """Wall time of `python -m mlp_lab --help` in a fresh interpreter, and whether torch got imported."""
    import subprocess

    code = (
        "import sys, time; t = time.perf_counter()\nfrom mlp_lab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    times = []
    torch_imported = False
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - start)
        torch_imported |= out.strip().endswith("TORCH") and not out.strip().endswith("NO-TORCH")
    return {"seconds": statistics.median(times), "all": times, "torch_imported": torch_imported}


def reference_mlp(config: Config, device: str) -> Config:
    """The built-in model a user's is timed against: configs/baseline.yaml's MLP (256-128 ReLU,
    dropout 0.2) on the user config's data and train sections, stepped by the autograd engine."""
    train = config.train.model_copy(update={"engine": "autograd", "device": device})
    # The shipped file, not a configs/baseline.yaml the user may have edited in the working directory.
    baseline = load_config(shipped_dir("configs") / "baseline.yaml").model
    return config.model_copy(update={"model": baseline, "train": train}, deep=True)


def time_user_against_builtin(config: Config, repeats: int, data_dirs=(), device: str = "cpu") -> dict[str, Any]:
    """A user model's trainer epoch (train + val) against the built-in MLP's on the autograd engine
    (`reference_mlp`), on the same data tensors, timed interleaved round by round."""
    config = config.model_copy(update={"train": config.train.model_copy(update={"device": device})}, deep=True)
    user, user_epoch = _trainer_epoch(config, data_dirs)
    builtin = Trainer(reference_mlp(config, device), "/nonexistent-bench-run", data=user.data)

    def builtin_epoch() -> None:
        builtin.train_epoch(None)
        evaluate(builtin.model, builtin.data.val)

    builtin_epoch()
    sync = torch.cuda.synchronize if user.device.type == "cuda" else (lambda: None)

    def synced(fn: Callable[[], None]) -> Callable[[], None]:
        return lambda: (fn(), sync())

    (u, u_times), (m, m_times) = _interleaved_medians([synced(user_epoch), synced(builtin_epoch)], repeats)
    return {
        "user": {"seconds": u, "all": u_times, "parameters": user.model.num_parameters()},
        "builtin": {"seconds": m, "all": m_times, "parameters": builtin.model.num_parameters()},
        "ratio": u / m,
        "rounds": [a / b for a, b in zip(u_times, m_times)],
    }


def run_user_benchmark(
    config: Config, repeats: int = 3, data_dirs=(), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """`bench` on a user's model: its epoch against the built-in MLP's on the autograd engine, on
    the CPU (and on the GPU when there is one). The ratio is the adapter's cost where the user's
    model computes what the built-in one does (configs/baseline.yaml's MLP: target <= 1.2)."""
    label = config.model.parsed.label
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": repeats}
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    for device in devices:
        r = time_user_against_builtin(config, repeats, data_dirs, device)
        results[device] = r
        log(
            f"({device}) user model {label}, train + val: {r['user']['seconds']:.3f} s/epoch "
            f"({r['user']['parameters']:,} parameters)"
        )
        log(
            f"({device}) built-in baseline MLP (256-128 relu, dropout 0.2), autograd engine: {r['builtin']['seconds']:.3f} s/epoch "
            f"({r['builtin']['parameters']:,} parameters)"
        )
        log(
            f"({device}) user/built-in = {r['ratio']:.2f}  (target <= 1.2 for a model computing the same; rounds "
            f"{min(r['rounds']):.2f}-{max(r['rounds']):.2f})"
        )
    return results


def run_benchmark(
    config: Config,
    repeats: int = 3,
    data_dirs=(),
    log: Callable[[str], None] = print,
    source: str = "config",
) -> dict[str, Any]:
    """Measure (a), (b), (c), (r) on the CPU (and the CUDA variants when a GPU is present); print a
    table. `source` names the config in errors (its file, for the CLI). A user's model is timed
    against the built-in MLP instead (`run_user_benchmark`)."""
    if config.model.kind == USER_KIND:
        return run_user_benchmark(config, repeats, data_dirs, log)
    if config.model.kind != "mlp":
        # The roofline, the floor and the tutorial pipeline are the MLP's; timing an MLP in their
        # place for a CNN config would answer a question nobody asked.
        raise MLPLabError(
            f"{source}: model.kind: bench measures the MLP trainer; {config.model.kind!r} is not benchmarked yet"
        )
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": repeats}
    cpu_config = config.model_copy(update={"train": config.train.model_copy(update={"device": "cpu"})}, deep=True)
    # (a) and (r) alternate round by round: trainer/roofline is the ratio this benchmark is for.
    trainer, trainer_epoch = _trainer_epoch(cpu_config, data_dirs)
    info = trainer.data.info
    widths = [info.in_features, *cpu_config.model.hidden_sizes, info.num_classes]
    roof_epoch, flops = roofline_epoch(
        widths, cpu_config.train.batch_size, len(trainer.data.train), len(trainer.data.val)
    )
    (a_median, a_times), (r_median, r_times) = _interleaved_medians([trainer_epoch, roof_epoch], repeats)
    a = _mlp_lab_result(trainer, a_median, a_times)
    r = {"seconds": r_median, "all": r_times, "gflops": flops / r_median / 1e9}
    # Each round's own a/r: its two epochs ran back to back, so the spread of these shows how
    # much the machine's load moved the ratio during this run.
    round_ratios = [at / rt for at, rt in zip(a_times, r_times)]
    data = a.pop("data")
    log(f"(a) mlp-lab trainer, train + val:          {a['seconds']:.3f} s/epoch  (peak RSS {a['peak_rss_mb']:.0f} MB)")
    log(f"(r) roofline, the epoch's matmuls bare:     {r['seconds']:.3f} s/epoch  ({r['gflops']:.0f} GFLOPS)")
    c = time_floor(cpu_config, repeats, data, a["steps"], torch.device("cpu"))
    log(f"(c) floor, fixed batch + val matmuls:       {c['seconds']:.3f} s/epoch")
    b = time_tutorial(cpu_config, repeats, data, data_dirs)
    log(f"(b) tutorial DataLoader pipeline + val:     {b['seconds']:.3f} s/epoch")
    g = time_augmentation(cpu_config, data, repeats)
    results["augmentation"] = g
    log(
        f"(g) augmented epoch {g['augmented_seconds']:.3f} s vs {g['plain_seconds']:.3f} s without: "
        f"{g['ratio']:.2f}x (target <= 1.3)"
    )
    results.update(
        {
            "a": a,
            "b": b,
            "c": c,
            "roofline": r,
            "a_over_c": a["seconds"] / c["seconds"],
            "b_over_a": b["seconds"] / a["seconds"],
            "trainer_over_roofline": a["seconds"] / r["seconds"],
            "trainer_over_roofline_rounds": round_ratios,
        }
    )
    log(
        f"trainer/roofline = {results['trainer_over_roofline']:.2f}  (target <= 2.0; rounds "
        f"{min(round_ratios):.2f}-{max(round_ratios):.2f})    "
        f"a/c = {results['a_over_c']:.2f}  (target <= 1.2)    b/a = {results['b_over_a']:.2f}  (target >= 4)    "
        f"peak RSS of (a) {a['peak_rss_mb']:.0f} MB (target <= 1536)    torch threads {results['threads']}"
    )
    startup = time_cli_startup()
    results["help_startup"] = startup
    log(
        f"mlp-lab --help: {startup['seconds']:.2f} s in a fresh interpreter (target <= 0.5), "
        f"torch imported: {'yes' if startup['torch_imported'] else 'no'}"
    )
    if torch.cuda.is_available():
        results["cuda"] = {}
        for label, update in (("cuda", {}), ("cuda+bf16", {"amp": True}), ("cuda+compile", {"compile": True})):
            cfg = config.model_copy(
                update={"train": config.train.model_copy(update={"device": "cuda", **update})}, deep=True
            )
            r = time_mlp_lab(cfg, repeats, data_dirs)
            r.pop("data")
            results["cuda"][label] = r
            log(f"(a) on {label:<13} {r['seconds']:.3f} s/epoch  ({a['seconds'] / r['seconds']:.1f}x the CPU)")
    else:
        log("CUDA variants (GPU-resident data, bf16 autocast, torch.compile): skipped, no CUDA GPU here")
    return results
