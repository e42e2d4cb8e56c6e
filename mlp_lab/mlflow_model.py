"""The MLflow pyfunc model of an mlp-lab run, logged as *code* (MLflow's models-from-code).

MLflow copies this file into each logged model and executes it when the model is loaded; it is
never imported by mlp-lab itself (``tracking/logger.py`` passes its path). Nothing is
unpickled: the weights come from the run's checkpoint through ``checkpoint.load_checkpoint``
(weights_only).

``predict`` takes, for a table model (a CSV source), rows of raw feature values, standardised here
as in training; for any other, a batch of raw images in the dataset's format (integers 0-255, N x H x W for
grayscale, N x C x H x W for colour; what the input example shows) or already-normalised
feature rows (floats, N x C*H*W), and returns the class probabilities (N x classes). The dtype
tells the two apart, so the logged signature declares only the output (an input schema would
make MLflow refuse one of the two forms before ``predict`` sees it).

A run whose model (or python data source) is the user's own code was logged with that code
(``code_paths``: ``code/mlp_lab_user_code/<sha256>/<file>``), which MLflow puts on ``sys.path``
when it loads the model. ``load_context`` makes that folder one that ``core.usercode.load_target``
searches, so the model loads in a fresh interpreter without the user's file, and only if the
copy has the content hash the run recorded. A module target (package.module:NAME) is not logged
with the model: it must be installed where the model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from mlp_lab.core.usercode import add_code_dir
from mlp_lab.data.normalise import to_features
from mlp_lab.tracking.logger import USER_CODE_DIR
from mlp_lab.training.checkpoint import load_checkpoint, model_from_checkpoint


class MLPLabModel(PythonModel):
    """A trained mlp-lab model (MLP or CNN): raw images or normalised feature rows in, class probabilities out."""

    def load_context(self, context) -> None:
        # MLflow prepends each logged model's code folder to sys.path (its documented contract
        # for code_paths): the user's code this model was logged with is in one of them.
        for entry in sys.path:
            if entry and (Path(entry) / USER_CODE_DIR).is_dir():
                add_code_dir(Path(entry) / USER_CODE_DIR)
        path = context.artifacts["checkpoint"]
        kind = context.model_config.get("checkpoint_kind", "best") if context.model_config else "best"
        checkpoint = load_checkpoint(path, kind)
        self.model = model_from_checkpoint(checkpoint, path)
        self.meta = checkpoint["data"]

    # The np.ndarray hint is one MLflow infers no schema from (the signature declares only the
    # output, see above); without a hint MLflow warns, in colour, on every load.
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        batch = np.asarray(model_input)
        c, h, w = self.meta["image_shape"]
        size = c * h * w
        if batch.ndim == 0 or batch.size % size:
            raise ValueError(
                f"expected images of {c}x{h}x{w} pixels or rows of {size} features, got shape {batch.shape}"
            )
        if self.meta.get("features"):
            features = table_rows(batch, self.meta)
        elif batch.dtype.kind in "ui":  # raw pixels; JSON from `mlflow models serve` arrives as int64
            if batch.size and (batch.min() < 0 or batch.max() > 255):
                raise ValueError(
                    "integer input is read as raw pixels and must lie in 0-255; pass normalised rows as floats"
                )
            images = torch.from_numpy(batch.astype(np.uint8)).reshape(-1, c, h, w)  # a writable copy
            # Raw pixels get the run's pixel order too (data.permute_pixels); float rows are features already.
            features = to_features(images, self.meta["mean"], self.meta["std"], self.meta.get("pixel_permutation"))
        elif batch.dtype.kind == "f":
            features = torch.from_numpy(batch.astype(np.float32)).reshape(-1, size)
        else:
            raise ValueError(f"expected integer pixels or float feature rows, got dtype {batch.dtype}")
        with torch.inference_mode():
            return torch.softmax(self.model(features), 1).numpy()


def table_rows(batch: np.ndarray, meta: dict) -> torch.Tensor:
    """A table model's input: rows of the raw feature values (as the CSV holds them, in its
    feature order), standardised by the training split's mean and std as training did."""
    if batch.dtype.kind not in "uif":
        raise ValueError(f"expected rows of {len(meta['features'])} numbers, got dtype {batch.dtype}")
    rows = torch.from_numpy(np.asarray(batch, dtype=np.float64)).reshape(-1, len(meta["features"]))
    mean = torch.tensor(meta["mean"], dtype=torch.float64)
    std = torch.tensor(meta["std"], dtype=torch.float64)
    return ((rows - mean) / std).to(torch.float32)


mlflow.models.set_model(MLPLabModel())
