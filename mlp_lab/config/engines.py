"""The step engines as facts: their names, their numerics versions, and which one a config trains
with. No torch: the config hash (`hashing`) and the config checks (`load`) read them, and both
sit below the engines themselves (`mlp_lab.training.engines`).

An engine's numerics version is bumped whenever the same config trains to different numbers
under it on purpose. The config hash holds the version of the engine the config resolves to, so
a change to one engine's numbers makes only that engine's finished runs stale: `compare` retrains
those and keeps the others.
"""

from __future__ import annotations

from mlp_lab.config.schema import Config

# Until redesign step 2 one global version covered both engines (1: the original; 2: fused
# optimizer steps, 16-bit dropout masks; 3: the plain MLP's hand-written step; 4: that step's
# dropout masks drawn by numpy's PCG64 instead of torch's mt19937). Each engine starts from that
# global 4, so every run finished under it keeps its hash and stays finished, though autograd's own
# numbers last changed at 2: its version only moves from here on.
AUTOGRAD_NUMERICS_VERSION = 4
HAND_NUMERICS_VERSION = 4

# Engine name -> numerics version. `train.engine: auto` is not an engine: it resolves to one.
NUMERICS_VERSIONS: dict[str, int] = {"autograd": AUTOGRAD_NUMERICS_VERSION, "hand": HAND_NUMERICS_VERSION}

# The activations whose backward the hand-written step knows (`training.engines.hand`).
HAND_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")


def hand_unsupported(cfg: Config) -> str | None:
    """Why the hand-written step cannot train `cfg` (a short phrase naming the key), or None when it can.

    The rule that `HandStep.for_model` applies to the built network, read from the config: a
    Linear/activation/dropout stack, no bf16 autocast, no torch.compile. `train.amp` counts unless
    the device is the CPU, where autocast is off: which engine trains a config must not depend on
    the machine, or its hash could not name it.
    """
    model, train = cfg.model, cfg.train
    if model.kind != "mlp":
        return f"model.kind is {model.kind!r}"
    if model.batch_norm:
        return "model.batch_norm is on"
    if model.activation not in HAND_ACTIVATIONS:
        return f"model.activation {model.activation!r} has no hand-written backward"
    if train.compile:
        return "train.compile is on"
    if train.amp and train.device != "cpu":
        return "train.amp asks for bf16 autocast"
    return None


def auto_engine(cfg: Config) -> str:
    """The engine `train.engine: auto` picks: the hand-written step where it applies, else autograd."""
    return "hand" if hand_unsupported(cfg) is None else "autograd"


def resolve_engine(cfg: Config) -> str:
    """The engine `cfg` trains with: `train.engine` as written, `auto` resolved."""
    return auto_engine(cfg) if cfg.train.engine == "auto" else cfg.train.engine


def numerics_version(cfg: Config) -> int:
    """The numerics version `cfg` trains under: its engine's."""
    return NUMERICS_VERSIONS[resolve_engine(cfg)]
