"""The step engines: which one a config trains with and the numerics version its hash holds; the
hand-written MLP step against autograd, its dropout masks, the flat parameter buffer and the
optimizer step that bypasses `Optimizer.step`'s wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import mlp_lab.config.engines
import mlp_lab.models.mlp
from mlp_lab.config.engines import NUMERICS_VERSIONS, hand_unsupported, resolve_engine
from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config
from mlp_lab.config.schema import OptimizerConfig
from mlp_lab.core.errors import ConfigError
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.models.registry import build_model
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.training.engines.autograd import weight_penalty
from mlp_lab.training.engines.hand import CHUNK_STEPS, DropoutMasks, HandStep, keep_threshold
from mlp_lab.training.flatparams import flatten_parameters
from mlp_lab.training.optim import OptimizerStep, build_optimizer

# The hashes the code before per-engine numerics (1f9c148, one global NUMERICS_VERSION = 4) gave
# three shipped configs, one per path: a plain MLP (the hand step), a BatchNorm MLP and a CNN
# (autograd). Computed with that commit's mlp_lab/config.py (`git archive 1f9c148 mlp_lab`, then
# `config_hash(load_config("configs/<name>.yaml"))`): every run it finished must stay finished.
HASHES_BEFORE_ENGINES = {
    "baseline": ("hand", "b2f81186f0e38be7"),
    "mnist": ("autograd", "f75f558d3cbcaab0"),
    "fashion_cnn": ("autograd", "d6535a429549ea1a"),
}


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE_ENGINES))
def test_runs_finished_before_per_engine_numerics_keep_their_hash(name):
    engine, before = HASHES_BEFORE_ENGINES[name]
    cfg = load_config(f"configs/{name}.yaml")
    assert (cfg.train.engine, resolve_engine(cfg), config_hash(cfg)) == ("auto", engine, before)
    # Naming the engine auto picks is the same computation: the same hash.
    assert config_hash(load_config(f"configs/{name}.yaml", [f"train.engine={engine}"])) == before


def test_autograd_on_a_plain_mlp_is_another_computation_and_another_hash():
    cfg = load_config("configs/baseline.yaml", ["train.engine=autograd"])
    assert resolve_engine(cfg) == "autograd"
    assert config_hash(cfg) != HASHES_BEFORE_ENGINES["baseline"][1]


def test_bumping_one_engines_numerics_makes_only_its_runs_stale(tiny_config, tmp_path, monkeypatch):
    from mlp_lab.training.trainer import Trainer, train

    hand, autograd = tiny_config(train={"epochs": 1}), tiny_config(model={"batch_norm": True}, train={"epochs": 1})
    train(hand, tmp_path / "hand")
    train(autograd, tmp_path / "autograd")
    hashes = {name: config_hash(load_config(f"configs/{name}.yaml")) for name in HASHES_BEFORE_ENGINES}
    bumped = NUMERICS_VERSIONS["hand"] + 1
    monkeypatch.setitem(mlp_lab.config.engines.NUMERICS_VERSIONS, "hand", bumped)
    assert rundir.run_status(tmp_path / "hand", config_hash(hand)) == RunStatus.STALE
    assert rundir.run_status(tmp_path / "autograd", config_hash(autograd)) == RunStatus.DONE
    for name, (engine, _) in HASHES_BEFORE_ENGINES.items():
        changed = config_hash(load_config(f"configs/{name}.yaml")) != hashes[name]
        assert changed == (engine == "hand"), name
    # What trains now records the new version.
    assert Trainer(hand, tmp_path / "again").engine.numerics_version == bumped


@pytest.mark.parametrize(
    "sets, reason",
    [
        (["model.batch_norm=true"], "model.batch_norm is on"),
        (["model.activation=gelu"], "model.activation 'gelu' has no hand-written backward"),
        (["model.kind=cnn"], "model.kind is 'cnn'"),
        (["train.compile=true"], "train.compile is on"),
        (["train.amp=true"], "train.amp asks for bf16 autocast"),
    ],
)
def test_the_hand_engine_where_it_cannot_apply_is_one_config_error(sets, reason):
    with pytest.raises(ConfigError) as exc:
        load_config("configs/baseline.yaml", ["train.engine=hand", *sets])
    assert exc.value.errors == [
        f"--set train.engine=hand: train.engine: 'hand' cannot train this config ({reason}): use train.engine: autograd"
    ]
    # auto takes autograd there, silently and correctly.
    assert resolve_engine(load_config("configs/baseline.yaml", sets)) == "autograd"


def test_amp_is_no_reason_against_the_hand_step_on_the_cpu():
    cfg = load_config("configs/baseline.yaml", ["train.engine=hand", "train.amp=true", "train.device=cpu"])
    assert resolve_engine(cfg) == "hand"


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"hidden_sizes": []},
        {"input_dropout": 0.2, "dropout": 0.1},
        *({"activation": a, "dropout": 0.3} for a in ("relu", "tanh", "sigmoid", "gelu", "leaky_relu")),
        {"batch_norm": True},
        {"kind": "cnn", "conv": {"channels": [4]}},
    ],
)
def test_the_config_rule_and_the_built_network_agree_on_where_the_hand_step_applies(tiny_config, model):
    cfg = tiny_config(model=model)
    network = build_model(cfg.model, (1, 28, 28), 10)
    assert (hand_unsupported(cfg) is None) == (HandStep.for_model(network, 0.0, 0.0, 0.0) is not None)


def _batch(n: int = 32, features: int = 20, classes: int = 5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def _autograd_grads(model, x, y, label_smoothing, l1, l2):
    model.train()
    logits = model(x)
    objective = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    penalty = weight_penalty(model.penalized_weights(), l1, l2)
    if penalty is not None:
        objective = objective + penalty
    objective.backward()
    return logits.detach(), F.cross_entropy(logits.detach(), y), [p.grad.clone() for p in model.parameters()]


CASES = {
    "relu, dropout": dict(hidden_sizes=[16, 8], dropout=0.3),
    "input dropout, tanh": dict(hidden_sizes=[16], activation="tanh", input_dropout=0.2, dropout=0.1),
    "sigmoid": dict(hidden_sizes=[12, 12], activation="sigmoid"),
    "leaky relu": dict(hidden_sizes=[16, 8], activation="leaky_relu", dropout=0.5),
    "logistic": dict(hidden_sizes=[]),
}


@pytest.mark.parametrize("smoothing, l1, l2", [(0.0, 0.0, 0.0), (0.1, 1e-3, 1e-2)])
@pytest.mark.parametrize("case", CASES)
def test_hand_step_gradients_equal_autograd(case, smoothing, l1, l2, monkeypatch):
    torch.manual_seed(0)
    model = ParameterizedMLP(20, num_classes=5, **CASES[case])
    twin = copy.deepcopy(model)
    x, y = _batch()
    step = HandStep.for_model(model, smoothing, l1, l2)
    assert step is not None
    flatten_parameters(model)
    keeps = step.masks(len(y), seed=3, device=x.device).at(0, 0, len(y))
    assert [k.shape[1] for k in keeps] == step.widths
    # Autograd's model, its Dropout modules handed the same masks (scaled as `dropout_mask` does).
    queue = [k * keep_threshold(p)[1] for k, p in zip(keeps, step.rates)]
    monkeypatch.setattr(mlp_lab.models.mlp, "dropout_mask", lambda shape, p, device, dtype: queue.pop(0))
    logits, loss = step(x, y, keeps)
    want_logits, want_loss, want_grads = _autograd_grads(twin, x, y, smoothing, l1, l2)
    assert not queue
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip([p.grad for p in model.parameters()], want_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_a_partial_last_batch_takes_the_masks_first_rows():
    torch.manual_seed(0)
    model = ParameterizedMLP(20, [16], 5, dropout=0.5)
    flatten_parameters(model)
    step = HandStep.for_model(model, 0.0, 0.0, 0.0)
    masks = step.masks(32, seed=0, device=torch.device("cpu"))
    x, y = _batch(n=7)
    (keep,) = masks.at(1, 5, 7)
    assert keep.shape == (7, 16)
    assert torch.equal(keep, masks.at(1, 5, 32)[0][:7])
    step(x, y, [keep])


@pytest.mark.parametrize("kwargs", [dict(batch_norm=True), dict(activation="gelu")])
def test_models_the_hand_step_does_not_cover_take_autograd(kwargs):
    model = ParameterizedMLP(20, [8], 5, **kwargs)
    assert HandStep.for_model(model, 0.0, 0.0, 0.0) is None


def test_dropout_masks_are_a_function_of_seed_epoch_and_step():
    """A resumed run regenerates its masks from (seed, epoch, step) alone: in any order of access,
    across chunk boundaries; and they drop at the configured rate."""
    cpu = torch.device("cpu")
    a = DropoutMasks([0.25, 0.5], [40, 30], 64, seed=1, device=cpu)
    b = DropoutMasks([0.25, 0.5], [40, 30], 64, seed=1, device=cpu)
    late = CHUNK_STEPS + 3
    first = [m.clone() for m in a.at(2, late, 64)]
    b.at(0, 0, 64)
    b.at(5, 1, 64)
    for m, n in zip(first, b.at(2, late, 64)):
        assert torch.equal(m, n)
    assert not torch.equal(first[0], a.at(2, late - 1, 64)[0])
    assert not torch.equal(first[0], a.at(3, late, 64)[0])
    assert not torch.equal(first[0], DropoutMasks([0.25, 0.5], [40, 30], 64, seed=2, device=cpu).at(2, late, 64)[0])
    # at() hands out views of buffers the next chunk's draw refills: clone what is kept across chunks.
    many = torch.stack([a.at(0, s, 64)[1].clone() for s in range(CHUNK_STEPS * 2)])
    assert set(many.unique().tolist()) == {0.0, 1.0}
    assert many.mean().item() == pytest.approx(0.5, abs=0.01)
    assert torch.stack([a.at(0, s, 64)[0] for s in range(CHUNK_STEPS)]).mean().item() == pytest.approx(0.75, abs=0.01)


def test_the_mask_stream_is_pinned_to_its_numerics_version():
    """Numerics version 4 draws the masks from numpy's PCG64 seeded by (seed, epoch, chunk). Another
    generator or seeding trains every dropout MLP to other numbers: that must come with a new
    hand engine's numerics version (so its finished runs go stale, not mixed into studies), and a
    new pin here."""
    keep = DropoutMasks([0.5], [16], 4, seed=0, device=torch.device("cpu")).at(3, CHUNK_STEPS + 1, 4)[0]
    bits = "".join(str(int(v)) for v in keep.flatten().tolist())
    assert (NUMERICS_VERSIONS["hand"], bits) == (4, "0010010110100100010101110011010011100000101111000101000001011100")


def test_flat_parameters_keep_the_model_and_let_autograd_accumulate_in_place():
    torch.manual_seed(0)
    model = ParameterizedMLP(20, [16], 5, batch_norm=True)
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = flatten_parameters(model)
    assert list(model.state_dict()) == keys
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    flat_ptr, size = params.flat.data_ptr(), params.flat.numel() * params.flat.element_size()
    for p in model.parameters():
        assert flat_ptr <= p.data_ptr() < flat_ptr + size
    x, y = _batch()
    for _ in range(2):  # the second backward must add into the same views, not replace them
        params.flat.grad.zero_()
        F.cross_entropy(model(x), y).backward()
    assert params.flat.grad is not None
    torch.testing.assert_close(params.flat.grad, torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    for p in model.parameters():
        assert flat_ptr <= p.data_ptr() < flat_ptr + size


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_one_flat_fused_step_equals_per_parameter_steps_bit_for_bit(name):
    """Models that take autograd (BatchNorm here) train to the same numbers as under numerics 2:
    the fused update is element-wise, so one flat tensor or a list of them is the same arithmetic."""
    cfg = OptimizerConfig(name=name, lr=0.01, weight_decay=1e-3)
    torch.manual_seed(0)
    model = ParameterizedMLP(20, [16, 8], 5, batch_norm=True)
    twin = copy.deepcopy(model)
    params = flatten_parameters(model)
    flat_opt = build_optimizer([params.flat], cfg)
    list_opt = build_optimizer(twin.parameters(), cfg)
    x, y = _batch()
    for _ in range(5):
        params.flat.grad.zero_()
        F.cross_entropy(model(x), y).backward()
        flat_opt.step()
        list_opt.zero_grad(set_to_none=True)
        F.cross_entropy(twin(x), y).backward()
        list_opt.step()
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "cfg",
    [
        OptimizerConfig(name="adam", lr=0.01),
        OptimizerConfig(name="adam", lr=0.01, weight_decay=1e-2),
        OptimizerConfig(name="adamw", lr=0.01, weight_decay=1e-2),
        OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        OptimizerConfig(name="sgd", lr=0.05, momentum=0.0),
    ],
    ids=["adam", "adam-l2", "adamw", "sgd-nesterov", "sgd-plain"],
)
@pytest.mark.parametrize("shapes", [[(500,)], [(20, 30), (30,), (5, 20)]], ids=["one-flat", "several"])
def test_the_direct_optimizer_step_equals_optimizer_step_bit_for_bit(cfg, shapes):
    g = torch.Generator().manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    direct, plain = build_optimizer(a, cfg), build_optimizer(b, cfg)
    step = OptimizerStep(direct)
    assert step.direct
    for i in range(6):
        for p, q in zip(a, b):
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        for opt in (direct, plain):
            opt.param_groups[0]["lr"] = cfg.lr * (1 - i / 10)  # as the schedules set it
        step()
        plain.step()
        assert all(torch.equal(p, q) for p, q in zip(a, b))
    sa, sb = direct.state_dict(), plain.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()  # plain SGD keeps no state
    for index, state in sb["state"].items():
        for key, value in state.items():
            assert torch.equal(sa["state"][index][key], value)
