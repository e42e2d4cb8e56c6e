"""The record that decides "same run": the config hash and the numerics version in it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlp_lab.config.engines import NUMERICS_VERSIONS, auto_engine, resolve_engine
from mlp_lab.config.schema import Config, config_to_dict


def config_hash(cfg: Config) -> str:
    """A short stable hash of everything that affects training results, the numerics version of
    the engine that trains it included (`engines`): a finished run made under older numerics is
    stale rather than mixed into a study.

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
    if cfg.model.kind == "user":
        # The code's content and its name decide what trains, not where the file lies: a moved
        # project keeps its runs, an edited file does not (`config.targets`).
        payload["model"]["target"] = cfg.model.parsed.label
    source = payload["data"].pop("source")
    if source is not None:
        # A user's data: its fingerprint and how it is read, not its absolute path or its name
        # in reports; data.dataset is not read at all then.
        source.pop("name", None)
        if "path" in source:
            source["path"] = Path(source["path"]).name
        payload["data"]["source"] = source
        payload["data"].pop("dataset", None)
    if not cfg.data.permute_pixels:
        del payload["data"]["permute_pixels"], payload["data"]["permute_seed"]
    if not cfg.data.augment.active:
        # The section came later: without augmentation a config hashes as it did before it
        # existed, so finished runs stay current (and an unused elastic_cells changes nothing).
        payload["data"].pop("augment")
    # train.engine is a choice, the engine it resolves to is the computation: `auto` and the name
    # of the engine auto picks train the same numbers and hash alike (as configs did before the
    # key existed); only a choice auto would not make enters the hash.
    engine = resolve_engine(cfg)
    del payload["train"]["engine"]
    if engine != auto_engine(cfg):
        payload["train"]["engine"] = engine
    payload["numerics_version"] = NUMERICS_VERSIONS[engine]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
