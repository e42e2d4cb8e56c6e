"""A user's own model (`model: {target: FILE.py:NAME | package.module:NAME, args: {...}}`): the
target callable imported (after its recorded content hash is checked), called with the data's
sizes where its signature names them and `model.args`, checked on a blank batch, and wrapped in a
`Network` the trainer, checkpoints, the summary and bench use as they use a built-in one.

What the target is given, by keyword and only where its signature names the parameter:
`num_classes`, `in_features` (C*H*W), `in_channels` (C) and `input_shape` ((C, H, W), or
(features,) for a table). A signature with `**kwargs` is given none of these implicitly (the
tool cannot tell which ones it wants, and an unexpected keyword deep inside a library's
constructor is a worse error than none): name them in its parameters or in `model.args`.
`model.args` wins over a size the tool would pass, so a model may be told a different width on
purpose; the output check below then says where that leads.

A table arrives as images of shape (F, 1, 1) (`data`'s convention): such a shape is a table here.

The wrapper (`UserNetwork`) holds the user's module as `module` and gives checkpoints the user's
module's own `state_dict` keys, so a run's `best.pt` weights load straight into the user's class
(`MyNet(**args).load_state_dict(torch.load(...)["model"])`), without mlp-lab.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mlp_lab.config.model_sections import UserModelConfig
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.usercode import call_user_code, load_target
from mlp_lab.models.registry import ModelFamily, count_parameters, layer_detail, register_family
from mlp_lab.models.summary import module_table, table_macs

KEY = "model.target"
SIZES = ("num_classes", "in_features", "in_channels", "input_shape")
# Examples in the batch the output is checked on: two, so a BatchNorm in train mode would work too.
CHECK_BATCH = 2


def is_table(image_shape: tuple[int, int, int]) -> bool:
    """Whether a dataset of this shape is a table (F features arrive as (F, 1, 1))."""
    return image_shape[1] == 1 and image_shape[2] == 1


def sizes_for(image_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """What the tool can tell a target about the data, by parameter name."""
    c, h, w = image_shape
    return {
        "num_classes": num_classes,
        "in_features": c * h * w,
        "in_channels": c,
        "input_shape": (c * h * w,) if is_table(image_shape) else (c, h, w),
    }


def _parameters(fn: Any) -> Mapping[str, inspect.Parameter] | None:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C extension without a signature
        return None


def call_arguments(
    section: UserModelConfig, fn: Any, image_shape: tuple[int, int, int], num_classes: int
) -> dict[str, Any]:
    """The keyword arguments the target is called with: the sizes its signature names, then
    `model.args`; an argument it does not take or a required one left out is a one-line error."""
    label, args = section.parsed.label, dict(section.args)
    parameters = _parameters(fn)
    if parameters is None:
        return args
    named = {
        n: p for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
    }
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    taken = [n for n, p in named.items() if p.kind != p.POSITIONAL_ONLY]
    for name in args:
        if name not in taken and not takes_any:
            close = difflib.get_close_matches(name, taken, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MLPLabError(
                f"model.args.{name}: {label} takes no argument {name!r}; {hint}"
                f"it takes: {', '.join(taken) or 'no keyword arguments'}"
            )
    sizes = sizes_for(image_shape, num_classes)
    given = {n: sizes[n] for n in SIZES if n in taken} | args
    for name, p in named.items():
        if p.default is not p.empty or name in given:
            continue
        if p.kind == p.POSITIONAL_ONLY:
            raise MLPLabError(
                f"{KEY}: {label} needs the positional-only argument {name!r}, which cannot be given by name: "
                "wrap it in a function taking keyword arguments"
            )
        raise MLPLabError(
            f"model.args: {label} needs {name!r}: add model.args.{name} (the tool passes only "
            f"{', '.join(SIZES)} by itself)"
        )
    return given


def flat_input(section: UserModelConfig, fn: Any, image_shape: tuple[int, int, int]) -> bool:
    """Whether forward() gets flat rows (N, features) rather than images (N, C, H, W): as
    `model.input` says, or for `auto` when the data is a table or the target asks for
    `in_features` and neither `in_channels` nor `input_shape`."""
    if section.input != "auto":
        return section.input == "flat"
    parameters = _parameters(fn) or {}
    return is_table(image_shape) or (
        "in_features" in parameters and not {"in_channels", "input_shape"} & set(parameters)
    )


class UserNetwork(nn.Module):
    """A user's module as a `Network`: forward reshapes the rows the data passes (N, C*H*W) to what
    the module takes; its state_dict is the module's own (no prefix), so checkpoints load into
    the user's class directly."""

    def __init__(self, module: nn.Module, image_shape: tuple[int, int, int], flat: bool, label: str):
        super().__init__()
        self.module = module
        self.image_shape = image_shape
        self.example_shape = (image_shape[0] * image_shape[1] * image_shape[2],) if flat else image_shape
        self.label = label

    @property
    def layers(self) -> nn.Sequential:
        """Images to logits, as the `Network` protocol asks (a view, not a registered child)."""
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, self.example_shape), self.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.reshape(x.shape[0], *self.example_shape))

    def penalized_weights(self) -> list[torch.Tensor]:
        """The module's own `penalized_weights()` where it has one, else its weight tensors (two or
        more dimensions: matrices and kernels, not biases or BatchNorm)."""
        own = getattr(self.module, "penalized_weights", None)
        if callable(own):
            return list(call_user_code(own, what=f"{KEY}: {self.label}.penalized_weights"))
        return [p for p in self.module.parameters() if p.dim() >= 2 and p.requires_grad]

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return count_parameters(self.module, trainable_only)

    def layer_table(self, image_shape: tuple[int, int, int]) -> list[dict[str, Any]]:
        """The user's module tree as the summary's layer table (see `models.summary`)."""
        example = torch.zeros(1, *self.example_shape)
        return module_table(self.module, example, layer_detail)

    def macs_per_sample(self, image_shape: tuple[int, int, int]) -> int:
        """Multiply-accumulates of one example's forward pass, counted by torch."""
        return table_macs(self.layer_table(image_shape))

    # The user's own keys (see the class docstring); `prefix` keeps nesting (torch.compile's wrapper) working.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def check_output(network: UserNetwork, num_classes: int) -> None:
    """One blank batch through the model (eval mode, no gradients, the global RNG left as found):
    its output must be logits (batch, num_classes)."""
    label = network.label
    batch = torch.zeros(CHECK_BATCH, *network.example_shape)
    was_training = network.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            output = call_user_code(network.eval(), batch, what=f"{KEY}: {label}.forward")
    except MLPLabError:
        raise
    except Exception as exc:  # raised in a library's code with none of the user's frames
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise MLPLabError(
            f"{KEY}: {label} fails on a batch of shape {tuple(batch.shape)}: {type(exc).__name__}: {first} "
            "(set model.input: images or flat if it expects the other)"
        ) from None
    finally:
        network.train(was_training)
    got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if got != (CHECK_BATCH, num_classes):
        raise MLPLabError(
            f"{KEY}: {label} maps a batch of shape {tuple(batch.shape)} to {got}; it must return logits "
            f"(batch, num_classes) = {(CHECK_BATCH, num_classes)}"
        )


def build_user_model(section: UserModelConfig, image_shape: tuple[int, int, int], num_classes: int) -> UserNetwork:
    """The user's model a `model: {target: ...}` section names, for data of `image_shape`."""
    target = section.parsed
    fn = load_target(target.name, file=target.file, module=target.module, sha256=section.code_sha256, key=KEY)
    kwargs = call_arguments(section, fn, image_shape, num_classes)
    module = call_user_code(fn, what=f"{KEY}: {target.label}", **kwargs)
    if not isinstance(module, nn.Module):
        raise MLPLabError(
            f"{KEY}: {target.label} returned a {type(module).__name__}, not a torch.nn.Module: "
            "name a class or a function that builds one"
        )
    network = UserNetwork(module, image_shape, flat_input(section, fn, image_shape), target.label)
    check_output(network, num_classes)
    return network


USER = register_family(ModelFamily(UserModelConfig, build_user_model))
