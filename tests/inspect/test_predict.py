"""Prediction from memory: pictures as users give them -> the run's input format -> probabilities."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

import mlp_lab.inspect.predict as predict_module
from mlp_lab.core.errors import MLPLabError
from mlp_lab.inspect.predict import (
    MAX_IMAGE_PIXELS,
    BlankImage,
    Pixels,
    Predictor,
    image_to_features,
    images_to_features,
    is_dark_on_light,
    load_pixels,
    predict,
    predict_files,
    prepare_image,
)
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.trainer import train

MNIST = {
    "dataset": "mnist",
    "classes": [str(i) for i in range(10)],
    "image_shape": [1, 28, 28],
    "mean": [0.1307],
    "std": [0.3081],
}
FASHION = {**MNIST, "dataset": "fashion_mnist"}


def drawing(size=280, box=(30, 20, 110, 130), ink=0, paper=255, width=14, mode="L"):
    """A '7' with a crossbar, drawn with a round brush inside `box` (left, top, right, bottom)."""
    image = Image.new(mode, (size, size), paper)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    stroke = [(left, top), (right, top), (left + (right - left) // 3, bottom)]
    pen.line(stroke, fill=ink, width=width, joint="curve")
    middle = (top + bottom) // 2
    pen.line([(left + (right - left) // 3, middle), (right, middle)], fill=ink, width=width)
    return image


def ink_box(view):
    rows, cols = np.flatnonzero(view.any(1)), np.flatnonzero(view.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_auto_invert_detects_dark_on_light_and_light_on_dark():
    dark_on_light = np.asarray(drawing(ink=0, paper=255))
    light_on_dark = np.asarray(drawing(ink=255, paper=0))
    assert is_dark_on_light(dark_on_light[..., None].astype(float))
    assert not is_dark_on_light(light_on_dark[..., None].astype(float))
    # Either way the model sees light ink on a dark background, as in MNIST.
    a, b = prepare_image(dark_on_light, MNIST), prepare_image(light_on_dark, MNIST)
    np.testing.assert_array_equal(a, b)
    assert a[0, 0, 0] == 0 and a.max() == 255
    # Forcing it overrides the guess: a forced invert of dark-on-light ink leaves a white field.
    assert prepare_image(dark_on_light, MNIST, invert=False, normalise="plain")[0, 0, 0] == 255


def test_small_off_centre_digit_is_scaled_to_20_px_and_centred_by_mass():
    view = prepare_image(drawing(box=(20, 15, 80, 105)), MNIST)[0]
    assert view.shape == (28, 28)
    assert max(ink_box(view)) == 20
    row, col = ndimage.center_of_mass(view.astype(float))
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_plain_resize_keeps_the_drawing_small_and_off_centre():
    picture = drawing(box=(20, 15, 80, 105))
    plain = prepare_image(picture, MNIST, normalise="plain")[0]
    digit = prepare_image(picture, MNIST, normalise="digit")[0]
    assert max(ink_box(plain > 30)) < 12
    row, col = ndimage.center_of_mass(plain.astype(float))
    assert row < 10 and col < 10
    assert np.abs(plain.astype(int) - digit.astype(int)).sum() > 28 * 28 * 10


def test_digit_normalisation_leaves_an_mnist_style_image_as_it_is():
    once = prepare_image(drawing(box=(100, 60, 190, 200)), MNIST)
    twice = prepare_image(once[0], MNIST)
    assert np.abs(once.astype(int) - twice.astype(int)).mean() < 4


def test_fashion_recipe_trims_fills_the_frame_and_centres_the_item():
    photo = np.full((300, 200, 3), 250, dtype=np.uint8)
    photo[40:240, 20:120] = (90, 60, 40)  # a dark 200 x 100 item on white, off-centre
    view = prepare_image(photo, FASHION)[0]
    height, width = ink_box(view > 40)
    assert height == 28 and 12 <= width <= 16
    cols = np.flatnonzero((view > 40).any(0))
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1
    assert view[:, : cols[0] - 1].max() == 0


def test_rgba_canvas_with_transparent_background_is_read_like_paper():
    on_paper = np.asarray(drawing())
    alpha = 255 - on_paper
    black_strokes = np.zeros((280, 280, 4), dtype=np.uint8)
    black_strokes[..., 3] = alpha  # a canvas: transparent black where nothing is drawn
    white_strokes = black_strokes.copy()
    white_strokes[..., :3] = 255
    expected = prepare_image(on_paper, MNIST)
    np.testing.assert_array_equal(prepare_image(black_strokes, MNIST), expected)
    np.testing.assert_array_equal(prepare_image(white_strokes, MNIST), expected)
    np.testing.assert_array_equal(prepare_image(Image.fromarray(black_strokes, "RGBA"), MNIST), expected)


@pytest.mark.parametrize(
    "blank", [np.full((280, 280), 255, np.uint8), np.zeros((280, 280, 4), np.uint8), np.zeros((5, 7), np.float32)]
)
@pytest.mark.parametrize("meta", [MNIST, FASHION])
def test_a_blank_picture_is_refused_not_classified(blank, meta):
    with pytest.raises(BlankImage, match="blank .*no ink.*nothing to classify"):
        prepare_image(blank, meta)
    with pytest.raises(BlankImage):
        image_to_features(blank, meta)


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(MLPLabError, match="normalise='digits'"):
        prepare_image(np.zeros((28, 28)), MNIST, normalise="digits")
    with pytest.raises(MLPLabError, match=r"\(28, 28, 5\)"):
        prepare_image(np.zeros((28, 28, 5)), MNIST)
    with pytest.raises(MLPLabError, match="invert='yes'"):
        prepare_image(np.zeros((28, 28)), MNIST, invert="yes")


@pytest.fixture
def untrained_run():
    """A run-like object: dropout and BatchNorm make train vs eval mode visible."""
    torch.manual_seed(0)
    model = ParameterizedMLP(784, [32], 10, batch_norm=True, dropout=0.5)
    return SimpleNamespace(model=model, data_meta=MNIST)


@pytest.fixture
def tiny_run(tiny_config, tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    train(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}), run_dir)
    return load_model(run_dir)


def test_in_memory_array_and_saved_png_get_the_same_probabilities(tiny_run, tmp_path):
    picture = np.asarray(drawing(size=120, box=(10, 30, 60, 100)))
    path = tmp_path / "seven.png"
    Image.fromarray(picture).save(path)
    predictor = Predictor(tiny_run)
    from_memory = predictor.probabilities([picture])
    from_file = predict(tiny_run.model, image_to_features(path, tiny_run.data_meta))
    assert torch.equal(from_memory, from_file)
    [result] = predict_files(tiny_run, [path], top_k=3)
    assert result["image"] == str(path) and len(result["top"]) == 3
    assert result["top"][0]["probability"] == pytest.approx(float(from_memory.max()))
    assert result["top"][0]["index"] == int(from_memory.argmax())
    assert predictor.top(picture, k=1)[0]["class"] == tiny_run.data_meta["classes"][int(from_memory.argmax())]


def test_a_batch_gets_one_probability_row_per_picture(untrained_run):
    model = untrained_run.model
    model.train()
    pictures = [np.asarray(drawing(box=(20 + 10 * i, 20, 120, 150))) for i in range(5)]
    features = images_to_features(pictures, untrained_run.data_meta)
    assert features.shape == (5, 784) and features.dtype == torch.float32
    probabilities = predict(model, features)
    assert probabilities.shape == (5, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(5))
    # Prediction is deterministic (dropout off) and leaves the model's mode as it found it.
    assert torch.equal(probabilities, predict(model, features)) and model.training


def test_missing_and_unreadable_files_name_the_file(untrained_run, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(MLPLabError, match=r"notes\.txt: not a readable image"):
        predict_files(untrained_run, [text])
    with pytest.raises(MLPLabError, match=r"nope\.png: image file not found"):
        predict_files(untrained_run, [tmp_path / "nope.png"])


def test_pixels_are_read_once_and_a_read_picture_is_never_read_again(tiny_run, monkeypatch):
    """The app's double read (issue 37): float 0..255 pixels read again as 0..1 turned a photo white."""
    photo = np.asarray(drawing(size=300, box=(60, 40, 220, 260), ink=40, paper=225))
    pixels = load_pixels(photo)
    assert isinstance(pixels, Pixels) and load_pixels(pixels) is pixels
    reads = []
    real = predict_module._pil_to_array

    def counted(img):
        reads.append(img.size)
        return real(img)

    monkeypatch.setattr(predict_module, "_pil_to_array", counted)
    predictor = Predictor(tiny_run)
    view, probabilities = predictor.see(Image.fromarray(photo))
    assert reads == [(300, 300)]  # one read of the picture for its view and its probabilities
    np.testing.assert_array_equal(view, prepare_image(photo, MNIST))
    assert view.max() == 255 and (view == 0).mean() > 0.5  # ink on a dark field, not a white square
    assert torch.equal(probabilities, predictor.probabilities([photo])[0])
    np.testing.assert_array_equal(predictor.view(pixels), view)


def test_files_that_are_not_pictures_name_the_file(untrained_run, tmp_path):
    cut = tmp_path / "cut.png"
    drawing(size=60).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    expected = {
        "cut.png": "not a readable image",
        "empty.png": "not a readable image (the file is empty)",
        "noise.jpg": "not a readable image",
        "folder.png": "is a directory",
        "gone.png": "which does not exist",
    }
    for name, message in expected.items():
        with pytest.raises(MLPLabError, match=rf"^{re.escape(str(tmp_path / name))}: .*{re.escape(message)}") as caught:
            predict_files(untrained_run, [tmp_path / name])
        assert "\n" not in str(caught.value)


def test_a_decompression_bomb_is_refused_from_its_header(untrained_run, tmp_path):
    """16000 x 16000 pixels in a few hundred KB: past Pillow's own refusal; 6000 x 6000 past ours."""
    big, bigger = tmp_path / "big.png", tmp_path / "bomb.png"
    Image.new("1", (6000, 6000)).save(big)
    Image.new("1", (16000, 16000)).save(bigger)
    assert bigger.stat().st_size < 1_000_000
    with pytest.raises(
        MLPLabError,
        match=rf"big\.png: the image is too large: 6000x6000 = 36,000,000 pixels, at most {MAX_IMAGE_PIXELS:,}",
    ):
        predict_files(untrained_run, [big])
    with pytest.raises(
        MLPLabError, match=rf"bomb\.png: the image is too large: 256,000,000 pixels, at most {MAX_IMAGE_PIXELS:,}"
    ):
        predict_files(untrained_run, [bigger])
