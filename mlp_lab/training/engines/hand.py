"""The hand engine: the plain MLP's training step written out by hand: forward, loss gradient and backward as a
few large operations, the gradients written straight into the parameters' `.grad`.

On the CPU a baseline step (784-256-128-10, batch 128) spent about as long in autograd's
bookkeeping (graph nodes, accumulation copies, views, scalar wrapping, many small kernels) as in
its matmuls. A Linear -> activation -> dropout stack needs none of that: each layer's backward is
two matmuls and one element-wise product, so this step does the forward and backward matmuls
plus the element-wise work and little else:

- dropout's 1 / (1 - p) is folded into the next matmul's `alpha` (the next layer's forward, its
  weight gradient and the gradient flowing back), so a mask is a multiply by 0/1 only, in place;
- ReLU and dropout share one backward, `threshold_backward(g, h, 0)`: the kept, positive units of
  the layer's output h are exactly those whose gradient passes;
- the keep/drop decisions for `CHUNK_STEPS` steps are drawn in one call from a generator seeded
  by (seed, epoch, chunk) (`DropoutMasks`), so they cost one comparison per step, and a resumed
  run regenerates the same ones without any saved state.

It covers `ParameterizedMLP` without BatchNorm; anything else in the stack (BatchNorm, GELU, a
conv layer), bf16 autocast and torch.compile take autograd (`HandStep.for_model` returns None;
`mlp_lab.config.engines.hand_unsupported` is the same rule read from the config).
The mathematics is autograd's, the rounding is not (the loss gradient, the bias sums and the
folded scales are formed differently) and the masks come from their own generator (numpy's PCG64
since numerics version 4; torch's mt19937 under version 3). `tests/training/test_engines.py` holds its
gradients to autograd's on the same masks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlp_lab.config.schema import Config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.models.mlp import DROPOUT_LEVELS, Dropout
from mlp_lab.training.engines.base import StepEngine
from mlp_lab.training.flatparams import flatten_parameters
from mlp_lab.training.optim import OptimizerStep, build_optimizer

# Steps whose dropout decisions are drawn at once: large enough that drawing is one call per
# ~60 steps, small enough that the int16 block stays a few MB (64 x 128 x 384 x 2 bytes = 6 MB
# for the baseline).
CHUNK_STEPS = 64


def keep_threshold(p: float) -> tuple[int, float]:
    """The int16 threshold a random int16 must reach to keep a unit, and the kept units' scale:
    p rounded to a multiple of 2**-16 as `model.dropout_mask` does, the scale its exact inverse."""
    dropped = min(round(p * DROPOUT_LEVELS), DROPOUT_LEVELS - 1)
    return dropped - DROPOUT_LEVELS // 2, DROPOUT_LEVELS / (DROPOUT_LEVELS - dropped)


class DropoutMasks:
    """Keep masks (0/1 in the activations' dtype) for every dropout site of every step, a
    function of (seed, epoch, step) alone."""

    def __init__(
        self,
        rates: list[float],
        widths: list[int],
        batch_size: int,
        seed: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ):
        self.thresholds = [keep_threshold(p)[0] for p in rates]
        self.widths, self.batch_size, self.seed, self.device, self.dtype = widths, batch_size, seed, device, dtype
        self._chunk: tuple[int, int] | None = None
        self._masks: list[torch.Tensor] = []

    def _draw(self, epoch: int, chunk: int) -> None:
        total = sum(self.widths)
        n = CHUNK_STEPS * self.batch_size * total
        if not self._masks:
            # One set of masks, refilled in place by every chunk: fresh 10-20 MB of them per chunk
            # cost page faults each time. (The draws below are a fresh array per chunk, as numpy's
            # random_raw has no out=; the allocator hands the freed block back: 0 page faults per
            # chunk measured after the first two.)
            self._masks = [
                torch.empty((CHUNK_STEPS, self.batch_size, width), dtype=self.dtype, device=self.device)
                for width in self.widths
            ]
        # numpy's PCG64 seeded by (seed, epoch, chunk), its raw 64-bit outputs read as four 16-bit
        # draws: the generator, not the comparison, is the cost, and PCG64's raw stream takes about
        # a third of the time torch's mt19937 (`torch.randint`) took (numerics v4; the figures are
        # on docs/results/2026-12-07-redesign.md).
        # On a GPU the draws are made here too and copied over, so a run's masks are the same on
        # every device.
        bits = np.random.PCG64(np.random.SeedSequence([self.seed, epoch, chunk, 0x6D61736B])).random_raw((n + 3) // 4)
        draws = torch.from_numpy(bits.view(np.int16)[:n]).to(self.device)
        block = draws.view(CHUNK_STEPS, self.batch_size, total)
        start = 0
        for mask, width, threshold in zip(self._masks, self.widths, self.thresholds):
            # A unit is kept when its draw reaches the threshold. The comparison writes 0/1
            # straight into the mask's dtype: one pass, where `(a >= t).to(dtype)` takes two
            # and a bool tensor between them (a quarter of the time on a baseline chunk).
            torch.ge(block[:, :, start : start + width], threshold, out=mask)
            start += width
        self._chunk = (epoch, chunk)

    def at(self, epoch: int, step: int, n: int) -> list[torch.Tensor]:
        """The 0/1 keep masks (n, width) of each site for `step` of `epoch` (a batch of n):
        views into buffers the next chunk's draw overwrites, so use them before asking for a
        step of another chunk (or clone them)."""
        chunk, offset = divmod(step, CHUNK_STEPS)
        if self._chunk != (epoch, chunk):
            self._draw(epoch, chunk)
        if n == self.batch_size:
            return [m[offset] for m in self._masks]
        return [m[offset, :n] for m in self._masks]


# The overload itself (its out= form): calling the packet (`torch.ops.aten.threshold_backward`)
# resolves the overload anew on every call, in Python.
_threshold_backward = torch.ops.aten.threshold_backward.grad_input


def _relu_grad(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    # In place on g, which nothing else reads, like the other activations' backward.
    return _threshold_backward(g, a, 0, grad_input=g)


def _tanh_grad(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return g.mul_(1 - a * a)


def _sigmoid_grad(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return g.mul_(a * (1 - a))


def _leaky_relu_grad(slope: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def grad(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return g.mul_(torch.where(a > 0, 1.0, slope))

    return grad


# Each activation's backward from its *output* a (in place on the incoming gradient where it can).
ACTIVATION_GRADS: dict[type[nn.Module], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    nn.ReLU: _relu_grad,
    nn.Tanh: _tanh_grad,
    nn.Sigmoid: _sigmoid_grad,
}


@dataclass
class _Layer:
    """One Linear and what follows it up to the next Linear: an activation and a dropout."""

    linear: nn.Linear
    activation: nn.Module | None = None
    activation_grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        # The Parameter objects themselves, held once: `linear.weight` goes through
        # nn.Module.__getattr__ (a dict walk per look-up, five per layer per step). flatten_parameters
        # rebinds their storage, not the objects, so these stay the module's own.
        self.weight: nn.Parameter = self.linear.weight
        self.bias: nn.Parameter = self.linear.bias


class HandStep:
    """A training step for a Linear/activation/dropout stack: call it with a batch and its keep
    masks, then step the optimizer. It writes every element of every parameter's `.grad`."""

    def __init__(self, input_dropout: float, layers: list[_Layer], label_smoothing: float, l1: float, l2: float):
        self.input_dropout = input_dropout
        self.layers = layers
        self.label_smoothing = label_smoothing
        self.l1, self.l2 = l1, l2
        self._loss_constants: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        # Each dropout site's kept-unit scale, once: the step folds it into the next gemm's alpha.
        self.input_scale = keep_threshold(input_dropout)[1] if input_dropout > 0 else 1.0
        self.scales = [keep_threshold(layer.dropout)[1] if layer.dropout > 0 else 1.0 for layer in layers]
        # The dropout sites in forward order (the inputs, then each hidden layer's output).
        self.rates = ([input_dropout] if input_dropout > 0 else []) + [
            layer.dropout for layer in layers if layer.dropout > 0
        ]
        self.widths = ([layers[0].linear.in_features] if input_dropout > 0 else []) + [
            layer.linear.out_features for layer in layers if layer.dropout > 0
        ]

    @classmethod
    def for_model(cls, model: nn.Module, label_smoothing: float, l1: float, l2: float) -> HandStep | None:
        """The hand-written step for `model`, or None when it holds anything but Flatten, Linear,
        ReLU/LeakyReLU/Tanh/Sigmoid and Dropout (BatchNorm, GELU, a CNN: those take autograd)."""
        modules = list(getattr(model, "layers", ()))
        if not modules or not isinstance(modules[0], nn.Flatten):
            return None
        input_dropout, layers = 0.0, []
        for module in modules[1:]:
            if isinstance(module, nn.Linear):
                layers.append(_Layer(module))
            elif isinstance(module, Dropout) and not layers:
                input_dropout = module.p
            elif isinstance(module, Dropout) and layers[-1].activation is not None and not layers[-1].dropout:
                layers[-1].dropout = module.p
            elif layers and layers[-1].activation is None and layers[-1].dropout == 0:
                if type(module) in ACTIVATION_GRADS:
                    grad = ACTIVATION_GRADS[type(module)]
                elif type(module) is nn.LeakyReLU and not module.inplace:
                    grad = _leaky_relu_grad(module.negative_slope)
                else:
                    return None
                layers[-1].activation, layers[-1].activation_grad = module, grad
            else:
                return None
        if not layers or layers[-1].activation is not None:
            return None
        if not all(layer.linear.bias is not None and layer.linear.weight.requires_grad for layer in layers):
            return None
        return cls(input_dropout, layers, label_smoothing, l1, l2)

    def masks(self, batch_size: int, seed: int, device: torch.device) -> DropoutMasks:
        """The keep-mask stream for this stack's dropout sites."""
        return DropoutMasks(self.rates, self.widths, batch_size, seed, device)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, keeps: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward on one batch with its keep masks (`DropoutMasks.at`): returns
        (logits, the batch's plain cross-entropy). Autograd is switched off for the step unless
        the caller has done so (the Trainer does, once per epoch: a `no_grad` per step is Python
        overhead paid on every batch)."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self._step(x, y, keeps)
        return self._step(x, y, keeps)

    def _step(self, x: torch.Tensor, y: torch.Tensor, keeps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        keeps = list(keeps)
        h, scale = x.flatten(1), 1.0
        if self.input_dropout > 0:
            h, scale = h * keeps.pop(0), self.input_scale
        # Per layer, what its backward needs: its input h (a 0/1-masked activation, whose dropout
        # scale is `scale`), its activation's output a when that is not ReLU, and its mask.
        saved: list[tuple[torch.Tensor, float, torch.Tensor | None, torch.Tensor | None]] = []
        for layer, layer_scale in zip(self.layers, self.scales):
            z = torch.addmm(layer.bias, h, layer.weight.t(), alpha=scale)
            a = keep = None
            next_scale = 1.0
            if layer.activation is not None:
                if layer.activation_grad is _relu_grad:
                    # In place on the fresh matmul output: ReLU's backward reads only h below.
                    z = torch.relu_(z)
                else:
                    a = z = layer.activation(z)
                if layer.dropout > 0:
                    # (A multiply, not masked_fill_: a boolean mask is ~15x slower on the CPU.)
                    keep = keeps.pop(0)
                    z = z.mul_(keep) if a is None else z * keep
                    next_scale = layer_scale
            saved.append((h, scale, a, keep))
            h, scale = z, next_scale
        logits = h
        logp = torch.log_softmax(logits, 1)
        loss = F.nll_loss(logp, y)
        # d(cross-entropy with label smoothing eps)/d(logits) = softmax - ((1 - eps) one-hot + eps / K), / batch.
        g = logp.exp_()
        eps, n = self.label_smoothing, y.shape[0]  # (len() of a tensor runs Python of its own)
        constants = self._loss_constants.get(n)
        if constants is None:
            # Made once per batch size: the -(1 - eps) added at each label, and eps / K and 1 / n
            # as 0-d tensors in g's dtype (the value a Python float is rounded to in the op, without
            # wrapping it into a tensor on every call).
            constants = self._loss_constants[n] = (
                g.new_full((n, 1), -(1.0 - eps)),
                g.new_tensor(eps / g.shape[1]),
                g.new_tensor(1.0 / n),
            )
        target, smoothing, inv_n = constants
        g.scatter_add_(1, y.unsqueeze(1), target)
        if eps > 0:
            g.sub_(smoothing)
        g.mul_(inv_n)
        for i in range(len(self.layers) - 1, -1, -1):
            layer, (h_in, scale, _, _) = self.layers[i], saved[i]
            weight, bias = layer.weight, layer.bias
            # dL/dW = g^T (scale * h_in), the scale in gemm's alpha; beta=0 ignores the old grad.
            weight.grad.addmm_(g.t(), h_in, beta=0, alpha=scale)
            torch.sum(g, 0, out=bias.grad)
            if self.l2 > 0:
                weight.grad.add_(weight, alpha=2.0 * self.l2)
            if self.l1 > 0:
                weight.grad.add_(weight.sign(), alpha=self.l1)
            if i == 0:
                break
            # Back through this layer's input: the previous layer's dropout (mask, scale) and activation.
            g = g.new_empty((g.shape[0], weight.shape[1])).addmm_(g, weight, beta=0, alpha=scale)
            below = self.layers[i - 1]
            _, _, a, keep = saved[i - 1]
            if below.activation_grad is _relu_grad:
                # h_in = relu(z) * keep is positive exactly where ReLU and the mask both pass.
                g = _relu_grad(g, h_in)
            else:
                if keep is not None:
                    g = g.mul_(keep)
                if below.activation_grad is not None:
                    g = below.activation_grad(g, a)
        return logits, loss


class HandEngine(StepEngine):
    """The hand-written step and its dropout-mask stream, stepping one flat parameter buffer."""

    name = "hand"

    def __init__(self, model: nn.Module, config: Config, device: torch.device):
        tc = config.train
        hand_step = HandStep.for_model(model, tc.label_smoothing, tc.l1, tc.l2)
        if hand_step is None:
            raise MLPLabError(f"train.engine: 'hand' cannot train a {type(model).__name__} like this one: use autograd")
        self.hand_step = hand_step
        self.masks = hand_step.masks(tc.batch_size, config.seed, device)
        # The step writes every gradient into one flat buffer, stepped as one tensor.
        self.optimizer = build_optimizer([flatten_parameters(model).flat], tc.optimizer)
        self.optimizer_step = OptimizerStep(self.optimizer)

    def grad_mode(self) -> contextlib.AbstractContextManager:
        # No autograd at all: switched off once for the epoch, not per step.
        return torch.no_grad()

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits, loss = self.hand_step(x, y, self.masks.at(epoch, step, y.shape[0]))
        self.optimizer_step()
        return logits, loss  # made without autograd: nothing to detach
