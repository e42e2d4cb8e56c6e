"""The MLflow pyfunc model of an mlp-lab run, logged as *code* (MLflow's models-from-code).

MLflow copies this file into each logged model and executes it when the model is loaded; it is
never imported by mlp-lab itself (``tracking.py`` passes its path). Nothing is unpickled: the
weights come from the run's checkpoint through ``checkpoint.load_checkpoint`` (weights_only).

``predict`` takes a batch of raw images in the dataset's format (uint8, N x H x W for grayscale,
N x C x H x W for colour; what the model's signature declares) or already-normalised feature
rows (float, N x C*H*W), and returns the class probabilities (N x classes).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from mlp_lab.checkpoint import load_checkpoint, model_from_checkpoint
from mlp_lab.data import to_features


class MLPLabModel(PythonModel):
    """A trained mlp-lab MLP: raw images or normalised rows in, class probabilities out."""

    def load_context(self, context) -> None:
        path = context.artifacts["checkpoint"]
        kind = context.model_config.get("checkpoint_kind", "best") if context.model_config else "best"
        checkpoint = load_checkpoint(path, kind)
        self.model = model_from_checkpoint(checkpoint, path)
        self.meta = checkpoint["data"]

    def predict(self, context, model_input, params=None) -> np.ndarray:
        batch = np.asarray(model_input)
        c, h, w = self.meta["image_shape"]
        if batch.dtype == np.uint8:
            images = torch.from_numpy(np.array(batch, copy=True)).reshape(-1, c, h, w)  # a writable copy
            features = to_features(images, self.meta["mean"], self.meta["std"])
        else:
            features = torch.from_numpy(batch.astype(np.float32, copy=False)).reshape(-1, c * h * w)
        with torch.inference_mode():
            return torch.softmax(self.model(features), 1).numpy()


mlflow.models.set_model(MLPLabModel())
