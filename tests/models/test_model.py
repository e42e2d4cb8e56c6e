"""ParameterizedMLP: shapes, parameter counts, train vs eval behaviour."""

import pytest
import torch
from torch import nn

from mlp_lab.config.model_sections import MLPConfig
from mlp_lab.models.mlp import Dropout, ParameterizedMLP, dropout_mask
from mlp_lab.models.registry import build_model


def test_logits_shape_and_flattening():
    model = ParameterizedMLP(784, [64, 32], 10)
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert model(torch.randn(5, 784)).shape == (5, 10)


@pytest.mark.parametrize(
    "hidden, batch_norm, expected",
    [
        ([], False, 784 * 10 + 10),  # logistic regression
        ([256, 128], False, (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)),
        # BatchNorm: no Linear bias, 2 affine parameters per unit.
        ([256], True, 784 * 256 + 2 * 256 + 256 * 10 + 10),
    ],
)
def test_parameter_count(hidden, batch_norm, expected):
    model = ParameterizedMLP(784, hidden, 10, batch_norm=batch_norm)
    assert model.num_parameters() == expected
    assert model.num_parameters(trainable_only=True) == expected


def test_layer_order_per_hidden_layer():
    model = ParameterizedMLP(10, [8], 3, activation="tanh", batch_norm=True, dropout=0.5)
    kinds = [type(m) for m in model.layers]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.Tanh, Dropout, nn.Linear]


def test_input_dropout_comes_first_and_only_when_asked():
    model = ParameterizedMLP(10, [8], 3, dropout=0.0, input_dropout=0.2)
    assert [type(m) for m in model.layers] == [nn.Flatten, Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert model.layers[1].p == 0.2
    assert nn.Dropout not in [type(m) for m in ParameterizedMLP(10, [8], 3).layers]


def test_dropout_is_random_in_train_and_off_in_eval():
    torch.manual_seed(0)
    model = ParameterizedMLP(20, [64], 4, dropout=0.5)
    x = torch.randn(8, 20)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_batchnorm_uses_batch_stats_in_train_and_running_stats_in_eval():
    torch.manual_seed(0)
    model = ParameterizedMLP(6, [16], 3, batch_norm=True)
    x = torch.randn(32, 6) * 5 + 3
    model.train()
    first = model(x[:1].repeat(4, 1) + torch.randn(4, 6) * 0.01)
    model(x)  # updates running statistics
    model.eval()
    single = model(x[:1])
    assert single.shape == (1, 3)
    # In eval mode one example's output does not depend on the rest of its batch.
    assert torch.allclose(model(x)[:1], single, atol=1e-6)
    assert not torch.allclose(first[:1], single, atol=1e-3)


def test_built_from_its_section_and_penalized_weights():
    cfg = MLPConfig(hidden_sizes=[16, 8], activation="gelu", batch_norm=True, dropout=0.1, input_dropout=0.3)
    model = build_model(cfg, (3, 2, 2), 5)
    assert [type(m) for m in model.layers][:3] == [nn.Flatten, Dropout, nn.Linear] and model.layers[1].p == 0.3
    assert [m.p for m in model.layers if type(m) is Dropout] == [0.3, 0.1, 0.1]
    weights = model.penalized_weights()
    assert [tuple(w.shape) for w in weights] == [(16, 12), (8, 16), (5, 8)]
    assert model.num_parameters() == cfg.geometry((3, 2, 2), 5).parameters


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        ParameterizedMLP(4, [4], 2, activation="swishy")


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_dropout_mask_drops_at_rate_p_and_stays_unbiased(p):
    torch.manual_seed(0)
    mask = dropout_mask(torch.Size([400, 1000]), p, torch.device("cpu"), torch.float32)
    dropped = (mask == 0).float().mean().item()
    # 400k Bernoulli draws: the standard error is at most 0.0008.
    assert abs(dropped - p) < 0.004
    kept = mask[mask != 0]
    assert torch.all(kept == kept[0]) and kept[0].item() == pytest.approx(1 / (1 - p), rel=1e-4)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.01)


def test_dropout_masks_follow_the_global_seed_and_keep_the_dtype():
    shape = torch.Size([3, 7, 5])  # 105 elements: not a multiple of the four masks one draw yields
    torch.manual_seed(3)
    a = dropout_mask(shape, 0.3, torch.device("cpu"), torch.float64)
    torch.manual_seed(3)
    b = dropout_mask(shape, 0.3, torch.device("cpu"), torch.float64)
    assert a.shape == shape and a.dtype == torch.float64 and torch.equal(a, b)
    assert not torch.equal(a, dropout_mask(shape, 0.3, torch.device("cpu"), torch.float64))


def test_dropout_module_is_an_nn_dropout_with_its_state_dict_keys():
    model = ParameterizedMLP(10, [8], 3, dropout=0.5, input_dropout=0.2)
    assert all(isinstance(m, nn.Dropout) for m in model.layers if isinstance(m, Dropout))
    reference = nn.Sequential(
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(10, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)
    )
    assert list(model.layers.state_dict()) == list(reference.state_dict())


def test_a_family_must_say_its_geometry_and_build_a_network():
    from typing import Literal

    from mlp_lab.config.section import Geometry, ModelSection
    from mlp_lab.models.registry import ModelFamily, register_family, unregister_family

    class Sizeless(ModelSection):
        kind: Literal["sizeless"] = "sizeless"

    with pytest.raises(TypeError, match="must implement geometry"):
        register_family(ModelFamily(Sizeless, lambda section, shape, classes: nn.Linear(1, 1)))

    class Bare(ModelSection):
        kind: Literal["bare"] = "bare"

        def geometry(self, image_shape, num_classes):
            return Geometry(features=1, parameters=2, macs=1)

    register_family(ModelFamily(Bare, lambda section, shape, classes: nn.Linear(1, 1)))
    try:
        with pytest.raises(ValueError, match="'bare' is already registered"):
            register_family(ModelFamily(Bare, lambda section, shape, classes: nn.Linear(1, 2)))
        with pytest.raises(TypeError, match="built a Linear, not a Network.*missing: layers, penalized_weights"):
            build_model(Bare(), (1, 1, 1), 1)
    finally:
        unregister_family("bare")
