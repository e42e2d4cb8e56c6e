"""ParameterizedMLP: shapes, parameter counts, train vs eval behaviour."""

import pytest
import torch
from torch import nn

from mlp_lab.config import ModelConfig
from mlp_lab.model import ParameterizedMLP


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
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout, nn.Linear]


def test_input_dropout_comes_first_and_only_when_asked():
    model = ParameterizedMLP(10, [8], 3, dropout=0.0, input_dropout=0.2)
    assert [type(m) for m in model.layers] == [nn.Flatten, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert model.layers[1].p == 0.2 and model.model_args["input_dropout"] == 0.2
    assert nn.Dropout not in [type(m) for m in ParameterizedMLP(10, [8], 3).layers]
    # model_args rebuild the same architecture, so checkpoints load into it.
    ParameterizedMLP(**model.model_args).load_state_dict(model.state_dict())


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


def test_from_config_and_penalized_weights():
    cfg = ModelConfig(hidden_sizes=[16, 8], activation="gelu", batch_norm=True, dropout=0.1, input_dropout=0.3)
    model = ParameterizedMLP.from_config(cfg, 12, 5)
    assert model.model_args["input_dropout"] == 0.3 and model.model_args["dropout"] == 0.1
    weights = model.penalized_weights()
    assert [tuple(w.shape) for w in weights] == [(16, 12), (8, 16), (5, 8)]
    assert model.model_args["hidden_sizes"] == [16, 8]


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        ParameterizedMLP(4, [4], 2, activation="swishy")
