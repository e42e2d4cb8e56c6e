"""The record that decides "same run": the config hash and the numerics version in it."""

from __future__ import annotations

import hashlib
import json

from mlp_lab.config.schema import Config, config_to_dict

# The trainer's numerics: bumped whenever the same config trains to different numbers on purpose
# (1: the original; 2: fused optimizer steps, 16-bit dropout masks; 3: the plain MLP's hand-written
# step, `handstep`; 4: that step's dropout masks drawn by numpy's PCG64 instead of torch's mt19937).
# Part of the config hash, so a finished run made under older numerics is stale rather than mixed
# into a study.
NUMERICS_VERSION = 4


def config_hash(cfg: Config) -> str:
    """A short stable hash of everything that affects training results, the numerics version included.

    The run name and output settings are left out: renaming a run or turning TensorBoard off
    does not change what is trained.
    """
    payload = config_to_dict(cfg)
    payload.pop("name")
    payload.pop("output")
    # Keys added after the first release are left out while they hold their defaults' meaning,
    # so every earlier config keeps its hash (and its finished runs stay finished).
    if cfg.model.kind == "mlp":
        # (An MLP's section no longer holds the conv blocks a CNN's does: nothing else to leave out.)
        del payload["model"]["kind"]
    if not cfg.data.permute_pixels:
        del payload["data"]["permute_pixels"], payload["data"]["permute_seed"]
    if not cfg.data.augment.active:
        # The section came later: without augmentation a config hashes as it did before it
        # existed, so finished runs stay current (and an unused elastic_cells changes nothing).
        payload["data"].pop("augment")
    payload["numerics_version"] = NUMERICS_VERSION
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
