"""Prediction from memory: any picture -> the run's input format -> class probabilities.

A drawing or a photo rarely looks like the training data: the digit is small, off-centre and dark
on light. Before the model sees it, it goes through the recipe its dataset was made with, so the
model gets what it was trained on:

- ``digit`` (MNIST, LeCun et al.): crop to the ink, scale the longer side to 20 of 28 pixels with
  an anti-aliased resize, and put the centre of mass at the centre of the 28 x 28 field.
- ``fashion`` (FashionMNIST, Xiao et al. 2017): trim the background, scale the longer side to fill
  the frame, sharpen, centre the box.
- ``plain``: resize the whole picture to the dataset's size (photos: CIFAR-10).

``normalise="auto"`` picks by the run's dataset. Everything works on a ``meta`` dict (a checkpoint's
``data`` record: dataset, classes, image_shape, mean, std), so a loaded model is reused across calls.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from mlp_lab.config.datasets import DATASETS
from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.normalise import to_features

if TYPE_CHECKING:
    from mlp_lab.training.checkpoint import LoadedRun

Invert = bool | Literal["auto"]

# "auto" is the recipe the run's dataset declares (`DatasetFacts.picture_recipe`): photos (CIFAR-10) are resized plainly.
NORMALISATIONS = ("auto", "plain", "digit", "fashion")

# MNIST's digits fill a 20 x 20 box inside the 28 x 28 field.
DIGIT_BOX = 20 / 28
# Ink fainter than this share of the strongest stroke does not count towards the digit's box:
# a soft brush's fringe or JPEG noise would otherwise make the digit look bigger than it is.
DIGIT_INK_THRESHOLD = 0.3
# FashionMNIST trims edges whose colour is within 5% of the maximum intensity of the background.
FASHION_TRIM = 0.05 * 255
# FashionMNIST sharpens with a Gaussian of sigma 1 after downscaling.
FASHION_SHARPEN_SIGMA = 1.0
FASHION_SHARPEN_AMOUNT = 1.0
# Below this contrast (on 0..255) between ink and background a picture counts as blank.
BLANK_CONTRAST = 8.0
# ITU-R 601 luma, the weights Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114])
# A phone photo is 12-50 megapixels; a digit needs far fewer. A decompression bomb (a 16000 x 16000
# PNG is a few hundred KB) is refused from its header, before decoding it.
MAX_IMAGE_PIXELS = 25_000_000


class BlankImage(MLPLabError):
    """A picture of one colour: no ink, nothing to classify."""


@dataclass(frozen=True)
class Pixels:
    """A picture read once: float64 (H, W, C) on 0..255, alpha composited, as `load_pixels` gives it.

    Every function here takes one, or anything `load_pixels` reads; a `Pixels` is never read again
    (a float array would be taken as 0..1 and a 0..255 picture would turn white)."""

    array: np.ndarray

    def channels(self, channels: int) -> np.ndarray:
        """The pixels as gray (1) or RGB (3) channels."""
        pixels = self.array
        if channels == 1 and pixels.shape[-1] == 3:
            return _luma(pixels)[..., None]
        if channels == 3 and pixels.shape[-1] == 1:
            return np.repeat(pixels, 3, axis=-1)
        return pixels

    @property
    def blank(self) -> bool:
        """One colour throughout (a white page, an empty canvas): no ink to classify."""
        return float(np.ptp(self.array)) < BLANK_CONTRAST


ImageInput = str | Path | np.ndarray | Image.Image | Pixels


def _bomb_pixels(exc: Exception) -> str:
    """The pixel count Pillow's DecompressionBombError names, or what it says when it names none."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"


def read_image(name: str, source: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An image file (a path or a binary stream) -> a decoded PIL image, or one MLPLabError naming
    `name`: too many pixels (checked from the header, before decoding), or not a readable image.
    The one reader of PNG/JPEG inputs: `mlp-lab predict` and the app's uploads."""
    too_large = "give a smaller picture (a digit needs no more than a few hundred pixels a side)"
    try:
        with warnings.catch_warnings():
            # Pillow warns (and refuses at twice its own cap) by itself; the cap here is lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise MLPLabError(
                        f"{name}: the image is too large: {width}x{height} = {width * height:,} pixels, "
                        f"at most {max_pixels:,}; {too_large}"
                    )
                img.load()
                return img.copy()
    except Image.DecompressionBombError as exc:
        raise MLPLabError(
            f"{name}: the image is too large: {_bomb_pixels(exc)}, at most {max_pixels:,}; {too_large}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        what = "the file is empty" if isinstance(exc, UnidentifiedImageError) and _empty(source) else None
        raise MLPLabError(
            f"{name}: not a readable image ({what or type(exc).__name__}); give a PNG or JPEG file"
        ) from None


def _empty(source: Any) -> bool:
    try:
        return Path(source).stat().st_size == 0 if isinstance(source, (str, Path)) else not source.getbuffer().nbytes
    except (OSError, AttributeError):
        return False


def _read_file(path: Path) -> Image.Image:
    if path.is_dir():
        raise MLPLabError(f"{path}: is a directory, expected an image file (give the files, e.g. {path}/*.png)")
    if not path.is_file():
        if path.is_symlink():
            raise MLPLabError(f"{path}: a link to {os.readlink(path)}, which does not exist; give the image file")
        raise MLPLabError(f"{path}: image file not found")
    return read_image(str(path), path)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I"):
        # 16-bit grayscale PNGs: Pillow's convert("L") would clip them instead of scaling.
        return np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("1", "F") else "RGB")
    return np.asarray(img)


def _flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    """Composite gray+alpha or RGBA (0..255) over a background that contrasts with the ink.

    A drawing canvas leaves untouched pixels transparent (often transparent black); what lies
    under them is the canvas background, so dark strokes go over white and light strokes over black.
    """
    colour, alpha = pixels[..., :-1], pixels[..., -1:] / 255.0
    if alpha.min() >= 1.0:
        return colour
    weight = alpha[..., 0]
    luma = _luma(colour)
    ink = float((luma * weight).sum() / weight.sum()) if weight.sum() > 0 else 0.0
    background = 255.0 if ink < 127.5 else 0.0
    return colour * alpha + background * (1.0 - alpha)


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3] @ LUMA


def load_pixels(image: ImageInput) -> Pixels:
    """A path, PIL image or array -> `Pixels` (float64 on the 0..255 scale, alpha composited).

    Arrays may be H x W (gray), H x W x 1, x 3 (RGB) or x 4 (RGBA, as a drawing canvas gives);
    integer arrays are on 0..255, float arrays on 0..1, boolean arrays are ink masks (True = 255).
    A `Pixels` is returned as it is: it was read already.
    """
    if isinstance(image, Pixels):
        return image
    if isinstance(image, (str, Path)):
        image = _read_file(Path(image))
    if isinstance(image, Image.Image):
        array = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise MLPLabError(f"cannot read an image from a {type(image).__name__}: pass a path, PIL image or array")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or 0 in array.shape:
        raise MLPLabError(f"an image array must be H x W or H x W x 1/3/4, not {array.shape}")
    if array.dtype == bool:
        pixels = array.astype(np.float64) * 255.0
    elif np.issubdtype(array.dtype, np.floating):
        pixels = np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0
    elif np.issubdtype(array.dtype, np.integer):
        pixels = np.clip(array.astype(np.float64), 0.0, 255.0)
    else:
        raise MLPLabError(f"an image array must hold numbers, not {array.dtype}")
    if pixels.shape[-1] in (2, 4):
        pixels = _flatten_alpha(pixels)
    pixels.setflags(write=False)  # shared by every use of this picture: none may change it for the next
    return Pixels(pixels)


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outer ring of pixels' luma, where a picture's background shows."""
    luma = _luma(pixels)
    return np.concatenate([luma[0], luma[-1], luma[:, 0], luma[:, -1]])


def is_dark_on_light(pixels: np.ndarray) -> bool:
    """Whether a picture (H, W, C on 0..255) has a light background, judged by its border."""
    return bool(np.median(_border(pixels)) > 127.5)


def _should_invert(pixels: np.ndarray, invert: Invert, channels: int) -> bool:
    if isinstance(invert, (bool, np.bool_)):
        return bool(invert)
    if invert != "auto":
        raise MLPLabError(f"invert={invert!r}: choose True, False or 'auto'")
    # Photos (RGB datasets) have no ink to speak of: inverting a bright sky would only hurt.
    return channels == 1 and is_dark_on_light(pixels)


def _resize(
    pixels: np.ndarray, height: int, width: int, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """Pillow's anti-aliased resize of each channel, in float so nothing is rounded twice."""
    if pixels.shape[:2] == (height, width):
        return pixels.copy()
    planes = [
        np.asarray(Image.fromarray(pixels[..., c].astype(np.float32)).resize((width, height), resample))
        for c in range(pixels.shape[-1])
    ]
    return np.stack(planes, axis=-1).astype(np.float64)


def _ink_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _fit(crop: np.ndarray, longer: int) -> np.ndarray:
    """Scale so the longer side is `longer` pixels, keeping the aspect ratio."""
    h, w = crop.shape[:2]
    scale = longer / max(h, w)
    return _resize(crop, max(1, round(h * scale)), max(1, round(w * scale)))


def _paste_centred(patch: np.ndarray, height: int, width: int) -> np.ndarray:
    frame = np.zeros((height, width, patch.shape[-1]))
    top, left = (height - patch.shape[0]) // 2, (width - patch.shape[1]) // 2
    frame[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return frame


def _digit(pixels: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """MNIST's recipe on light-on-dark pixels; None when there is no ink."""
    background = np.median(_border(pixels))
    ink = np.clip(pixels - background, 0.0, None)
    peak = _luma(ink).max()
    if peak < BLANK_CONTRAST:
        return None
    # MNIST's strokes reach full intensity: stretch a pencil's grey to match.
    ink *= 255.0 / peak
    box = _ink_box(_luma(ink) > DIGIT_INK_THRESHOLD * 255.0)
    patch = _fit(ink[box], round(DIGIT_BOX * max(height, width)))
    frame = np.clip(_paste_centred(patch, height, width), 0.0, 255.0)
    # MNIST's test digits have their centre of mass at (14.0, 14.0) in pixel indices, spread by
    # +-0.29 px: a whole-pixel shift to (height/2, width/2), which we copy.
    row, col = ndimage.center_of_mass(_luma(frame))
    shift = (round(height / 2 - row), round(width / 2 - col), 0)
    return ndimage.shift(frame, shift, order=0, mode="constant", cval=0.0)


def _fashion(pixels: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """FashionMNIST's recipe on light-on-dark pixels; None when there is nothing on the background."""
    background = np.median(_border(pixels))
    box = _ink_box(np.abs(_luma(pixels) - background) > FASHION_TRIM)
    if box is None:
        return None
    item = np.clip(pixels[box] - background, 0.0, None)
    patch = _fit(item, max(height, width))
    blurred = ndimage.gaussian_filter(patch, sigma=(FASHION_SHARPEN_SIGMA, FASHION_SHARPEN_SIGMA, 0))
    sharpened = np.clip(patch + FASHION_SHARPEN_AMOUNT * (patch - blurred), 0.0, 255.0)
    return _paste_centred(sharpened, height, width)


def dataset_recipe(dataset: str | None) -> str:
    """The recipe "auto" means for a model of `dataset`: the one its facts declare, else "plain"."""
    facts = DATASETS.get(dataset or "")
    return facts.picture_recipe if facts is not None else "plain"


def _recipe(normalise: str, meta: Mapping[str, Any]) -> str:
    if normalise not in NORMALISATIONS:
        raise MLPLabError(f"normalise={normalise!r}: choose one of {', '.join(NORMALISATIONS)}")
    return dataset_recipe(meta.get("dataset")) if normalise == "auto" else normalise


def prepare_image(
    image: ImageInput, meta: Mapping[str, Any], invert: Invert = "auto", normalise: str = "auto"
) -> np.ndarray:
    """What the model sees: uint8 (C, H, W) in the run's dataset format, before normalization.

    `invert` turns dark-on-light pictures into MNIST's light-on-dark ("auto": decided from the
    border, grayscale datasets only). `normalise` is "auto" (by dataset), "digit", "fashion" or
    "plain" (resize the whole picture). A picture of one colour raises BlankImage: nothing to classify.
    """
    channels, height, width = meta["image_shape"]
    recipe = _recipe(normalise, meta)
    loaded = load_pixels(image)
    pixels = loaded.channels(channels)
    inverted = _should_invert(pixels, invert, channels)
    if loaded.blank:
        name = f"{image}: " if isinstance(image, (str, Path)) else ""
        raise BlankImage(
            f"{name}the picture is blank (one colour, no ink): nothing to classify; "
            "give a picture with the digit or object on it"
        )
    if inverted:
        pixels = 255.0 - pixels
    result = None
    if recipe == "digit":
        result = _digit(pixels, height, width)
    elif recipe == "fashion":
        result = _fashion(pixels, height, width)
    if result is None:
        result = _resize(pixels, height, width)
    return np.clip(np.rint(result), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def image_to_features(
    image: ImageInput, meta: Mapping[str, Any], invert: Invert = "auto", normalise: str = "auto"
) -> torch.Tensor:
    """One picture -> a (1, C*H*W) float32 feature row, normalized exactly as the training data."""
    pixels = torch.from_numpy(prepare_image(image, meta, invert, normalise)).unsqueeze(0)
    return to_features(pixels, meta["mean"], meta["std"], meta.get("pixel_permutation"))


def images_to_features(
    images: Sequence[ImageInput], meta: Mapping[str, Any], invert: Invert = "auto", normalise: str = "auto"
) -> torch.Tensor:
    """Several pictures -> (N, C*H*W) feature rows, one per picture."""
    if len(images) == 0:
        c, h, w = meta["image_shape"]
        return torch.empty(0, c * h * w)
    pixels = torch.from_numpy(np.stack([prepare_image(i, meta, invert, normalise) for i in images]))
    return to_features(pixels, meta["mean"], meta["std"], meta.get("pixel_permutation"))


def predict(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes) for feature rows, in eval and inference mode, on the CPU."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.softmax(model(features.to(device)), dim=1).cpu()
    finally:
        model.train(was_training)


def top_classes(probabilities: torch.Tensor, classes: Sequence[str], k: int = 3) -> list[list[dict[str, Any]]]:
    """The k most probable classes of each row: [{"class", "index", "probability"}, ...]."""
    k = max(1, min(k, len(classes)))
    values, indices = probabilities.topk(k, dim=1)
    return [
        [{"class": classes[i], "index": int(i), "probability": float(v)} for v, i in zip(vs, ix)]
        for vs, ix in zip(values.tolist(), indices.tolist())
    ]


class Predictor:
    """A loaded run kept in memory for repeated predictions (the app calls it on every stroke).

    `run` is anything with `model` and `data_meta`, such as `load_model(run_dir)`'s result.
    """

    def __init__(self, run: LoadedRun, invert: Invert = "auto", normalise: str = "auto") -> None:
        self.model = run.model
        self.meta = run.data_meta
        _recipe(normalise, self.meta)  # a typo fails here, not on the first stroke
        self.invert = invert
        self.normalise = normalise

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def view(self, image: ImageInput) -> np.ndarray:
        """What the model sees for `image`: uint8 (C, H, W)."""
        return prepare_image(image, self.meta, self.invert, self.normalise)

    def probabilities(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """(N, classes) probabilities for several pictures."""
        return predict(self.model, images_to_features(images, self.meta, self.invert, self.normalise))

    def top(self, image: ImageInput, k: int = 3) -> list[dict[str, Any]]:
        """The k most probable classes for one picture."""
        return top_classes(self.probabilities([image]), self.classes, k)[0]

    def see(self, image: ImageInput) -> tuple[np.ndarray, torch.Tensor]:
        """What the model sees for one picture and its (classes,) probabilities, the picture read
        and preprocessed once: the app's one call per drawing or upload."""
        view = self.view(image)
        features = to_features(
            torch.from_numpy(view).unsqueeze(0), self.meta["mean"], self.meta["std"], self.meta.get("pixel_permutation")
        )
        return view, predict(self.model, features)[0]


def predict_files(
    run: LoadedRun,
    paths: Sequence[str | Path],
    top_k: int = 3,
    invert: Invert = "auto",
    normalise: str = "auto",
    keep_going: bool = False,
) -> list[dict[str, Any]]:
    """Top-k classes for each image file: [{"image": path, "top": [{"class", "index", "probability"}]}].

    A file that cannot be read raises MLPLabError; with `keep_going`, its entry is
    {"image": path, "error": message} instead and the other files are still classified."""
    predictor = Predictor(run, invert, normalise)
    results: list[dict[str, Any]] = []
    rows = []
    for path in paths:
        try:
            rows.append(image_to_features(path, predictor.meta, invert, normalise))
        except MLPLabError as exc:
            if not keep_going:
                raise
            results.append({"image": str(path), "error": str(exc)})
            continue
        results.append({"image": str(path)})
    if rows:
        tops = iter(top_classes(predict(predictor.model, torch.cat(rows)), predictor.classes, top_k))
        for result in results:
            if "error" not in result:
                result["top"] = next(tops)
    return results
