"""A user's own data (`data.source`): each kind read into the tensors the built-in datasets
become, the seeded splits and the normalisation, and every error a user meets, in one line.

Unit tests write tiny files in the real formats; the `slow` ones use scikit-learn's bundled
datasets (breast cancer as CSV, wine and digits as .npz, digits as a folder of PNGs, iris through
a python source) and the CLI; the headline test is in test_sources_fashion.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config import sizes
from mlp_lab.config.datasets import facts_for
from mlp_lab.config.load import load_config, validate_config
from mlp_lab.config.schema import DataConfig, config_to_dict
from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.load import load_data
from mlp_lab.data.user import read_source
from mlp_lab.runs.runindex import read_facts

runner = CliRunner()


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_folder(root: Path, classes: dict[str, int], size=(6, 5), mode="L", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return root


def tiny_table(tmp_path: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    rows = [[f"{rng.normal():.4f}", f"{rng.normal() * 10 + 3:.4f}", 7.0, ["yes", "no"][i % 2]] for i in range(n)]
    return write_csv(tmp_path / "t.csv", ["a", "b", "const", "target"], rows)


def source(**fields) -> DataConfig:
    return DataConfig(source=fields)


# -- reading each kind ------------------------------------------------------------------------


def test_csv_table_is_standardised_by_the_train_split_and_names_its_classes(tmp_path):
    cfg = source(kind="csv", path=str(tiny_table(tmp_path)), label="target")
    data = load_data(cfg)
    assert data.info.classes == ("no", "yes")  # names, sorted
    assert data.info.image_shape == (3, 1, 1) and data.info.features == ("a", "b", "const")
    assert (len(data.train), len(data.val), len(data.test)) == (29, 3, 8)  # test 0.2, then val 0.1
    assert data.train.x.mean(0).abs().max() < 1e-5
    # A constant feature standardises to 0, not to a division by zero.
    assert torch.isfinite(data.train.x).all() and data.train.x[:, 2].abs().max() == 0
    assert data.train.x[:, 1].std() == pytest.approx(1, abs=1e-5)
    facts = facts_for(cfg)
    assert facts.table and facts.input_shape == (3,) and facts.features == ("a", "b", "const")


def test_the_held_out_test_split_depends_on_the_split_seed_alone(tmp_path):
    path = str(tiny_table(tmp_path))
    first = read_source(source(kind="csv", path=path, label="target"))
    again = read_source(DataConfig(source={"kind": "csv", "path": path, "label": "target"}, val_fraction=0.2))
    other = read_source(DataConfig(source={"kind": "csv", "path": path, "label": "target"}, split_seed=1))
    # The test split is held out before validation: val_fraction leaves it as it is.
    assert torch.equal(first.test[0], again.test[0]) and len(first.test[1]) == 8
    assert not torch.equal(first.test[0], other.test[0])


def test_npz_with_integer_labels_and_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.npz"
    np.savez(
        path,
        images=rng.integers(0, 256, (30, 4, 4), dtype=np.uint8),
        labels=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (9, 4, 4), dtype=np.uint8),
        y_test=np.arange(9) % 3,
    )
    data = load_data(source(kind="npz", path=str(path), x="images", y="labels"))
    assert data.info.classes == ("0", "1", "2") and data.info.image_shape == (1, 4, 4)
    assert len(data.test) == 9 and len(data.train) + len(data.val) == 30
    assert data.info.scale == 255.0  # uint8 images are scaled as the built-in datasets are


def test_folder_converts_resizes_and_skips_what_is_not_an_image(tmp_path):
    root = write_folder(tmp_path / "pics", {"cat": 6, "dog": 5}, mode="RGB")
    (root / ".DS_Store").write_text("junk")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"not a png")
    grey = load_data(source(kind="folder", path=str(root), image_size=[3, 4], channels=1))
    assert grey.info.image_shape == (1, 3, 4) and grey.info.classes == ("cat", "dog")
    assert len(grey.train) + len(grey.val) + len(grey.test) == 11
    rgb = load_data(source(kind="folder", path=str(root), image_size=8, channels=3))
    assert rgb.train.x.shape[1] == 3 * 8 * 8


def test_folder_with_train_and_test_folders_uses_its_test_split(tmp_path):
    write_folder(tmp_path / "set" / "train", {"a": 8, "b": 8})
    write_folder(tmp_path / "set" / "test", {"a": 2, "b": 3}, seed=1)
    data = load_data(source(kind="folder", path=str(tmp_path / "set"), image_size=[6, 5]))
    assert len(data.test) == 5 and len(data.train) + len(data.val) == 16
    assert data.test.y.tolist() == [0, 0, 1, 1, 1]


def test_python_source_returning_tensors_and_class_names(tmp_path):
    (tmp_path / "make.py").write_text(
        "import torch\n"
        "def make(n=12):\n"
        "    x = torch.arange(n * 2, dtype=torch.float32).view(n, 2)\n"
        "    return {'x': x, 'y': torch.arange(n) % 2, 'classes': ['even', 'odd']}\n"
    )
    cfg = source(kind="python", target=f"{tmp_path}/make.py:make", args={"n": 20})
    data = load_data(cfg)
    assert data.info.classes == ("even", "odd") and data.info.features == ("x[0]", "x[1]")
    assert len(data.train) + len(data.val) + len(data.test) == 20


def test_a_saved_config_with_a_source_validates_again(tmp_path):
    cfg = validate_config(
        {"data": {"source": {"kind": "csv", "path": str(tiny_table(tmp_path)), "label": "target"}}}, "test"
    )
    dumped = config_to_dict(cfg)
    assert "dataset" not in dumped["data"]  # not read with a source: left out, so it loads again
    assert validate_config(dumped, "test") == cfg
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dumped))
    assert read_facts(run_dir)["dataset"] == "t"


# -- errors: one line each, naming the file or key and what to type ----------------------------


def error_of(cfg_or_fields) -> str:
    cfg = cfg_or_fields if isinstance(cfg_or_fields, DataConfig) else source(**cfg_or_fields)
    with pytest.raises(MLPLabError) as caught:
        load_data(cfg)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_csv_label_column_missing_lists_the_columns_and_a_guess(tmp_path):
    path = tiny_table(tmp_path)
    assert error_of(dict(kind="csv", path=str(path), label="traget")) == (
        f"{path}: no column 'traget' (data.source.label); did you mean 'target'? the columns: a, b, const, target"
    )


def test_csv_non_numeric_feature_column_is_named(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["size", "colour", "y"], [[1, "red", 0], [2, "blue", 1], [3, "red", 0]])
    assert error_of(dict(kind="csv", path=str(path), label="y")) == (
        f"{path}: column 'colour' is not numeric (line 2: 'red'); encode it as numbers, or leave it out with "
        "data.source.features: [the numeric columns]"
    )


def test_a_class_folder_with_no_images(tmp_path):
    root = write_folder(tmp_path / "pics", {"cat": 3})
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("no pictures here")
    message = error_of(dict(kind="folder", path=str(root)))
    assert message.startswith(f"{root / 'dog'}: a class folder with no images (.png, .jpg")
    assert message.endswith("put its images in it or remove the folder")


def test_a_folder_with_no_class_subfolders(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "0.png")
    assert error_of(dict(kind="folder", path=str(root))).startswith(
        f"{root}: no class subfolders; a folder source holds one subfolder of images per class"
    )


def test_an_unreadable_image_is_named(tmp_path):
    root = write_folder(tmp_path / "pics", {"a": 3, "b": 3})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    assert error_of(dict(kind="folder", path=str(root))).startswith(
        f"{root / 'b' / 'broken.png'}: not a readable image"
    )


def test_npz_missing_key_lists_the_keys(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, features=np.zeros((4, 2)), y=np.arange(4) % 2)
    assert error_of(dict(kind="npz", path=str(path))) == (
        f"{path}: no array 'x' (data.source.x); the file has: features, y; set data.source.x to one of them"
    )
    np.savez(path, x=np.zeros((4, 2)), y=np.arange(4) % 2, x_test=np.zeros((2, 2)))
    assert "no array 'y_test' (data.source.y_test)" in error_of(dict(kind="npz", path=str(path)))


def test_npz_x_and_y_of_different_lengths(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros((5, 2)), y=np.arange(4) % 2)
    assert error_of(dict(kind="npz", path=str(path))) == (
        f"{path}: x has 5 examples but y has 4 labels; give one label per example"
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("return [1, 2, 3]", "returned a 3-tuple"),
        ("return None", "returned a NoneType"),
        ("return {'x': [[1.0]] * 4, 'labels': [0, 1, 0, 1]}", "returned a dict with unknown keys ['labels']"),
    ],
)
def test_python_target_returning_the_wrong_thing(tmp_path, body, what):
    (tmp_path / "make.py").write_text(f"def make():\n    {body}\n")
    message = error_of(dict(kind="python", target=f"{tmp_path}/make.py:make"))
    assert message == (
        f"data.source.target: {tmp_path}/make.py:make {what}; return (x, y), (x, y, x_test, y_test) or a dict "
        "with keys x, y (and x_test, y_test, classes)"
    )


def test_python_target_raising_shows_the_users_line(tmp_path):
    (tmp_path / "make.py").write_text("def make():\n    raise ValueError('no data today')\n")
    message = error_of(dict(kind="python", target=f"{tmp_path}/make.py:make"))
    assert message == f"data.source.target: {tmp_path}/make.py:2: ValueError: no data today"


def test_unknown_torchvision_class_suggests_the_nearest():
    assert error_of(dict(kind="torchvision", name="KMNST")) == (
        "data.source.name: torchvision.datasets has no 'KMNST'; did you mean 'KMNIST' or 'MNIST' or 'QMNIST'? "
        "(a class of torchvision.datasets, e.g. KMNIST)"
    )


def test_torchvision_with_download_off_says_so_in_one_line(tmp_path):
    cfg = DataConfig(source={"kind": "torchvision", "name": "KMNIST"}, root=str(tmp_path), download=False)
    assert error_of(cfg) == (
        f"data.source: KMNIST is not in {tmp_path} and data.download is false; set data.download: true "
        f"(needs a network) or put its files in {tmp_path}"
    )


def test_a_dataset_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros((1000, 50), np.float32), y=np.arange(1000) % 2)
    monkeypatch.setattr(sizes, "physical_memory", lambda: 100_000)
    assert error_of(dict(kind="npz", path=str(path))) == (
        f"{path}: 1,000 examples of 50 values need about 0.4 MiB in memory, more than this machine's 0.1 MiB; "
        "use a subset (fewer files or rows, a smaller image_size)"
    )
    root = write_folder(tmp_path / "pics", {"a": 3, "b": 3})
    assert "6 examples of 4,096 values need about" in error_of(dict(kind="folder", path=str(root), image_size=64))


def test_changed_data_for_a_recorded_run_is_refused(tmp_path):
    path = tiny_table(tmp_path)
    recorded = validate_config({"data": {"source": {"kind": "csv", "path": str(path), "label": "target"}}}, "test")
    again = validate_config(config_to_dict(recorded), "test")  # a run's config.yaml read again
    load_data(again.data)
    with open(path, "a") as f:
        f.write("1.0,2.0,7.0,yes\n")
    message = error_of(validate_config(config_to_dict(recorded), "test").data)
    fingerprint = recorded.data.source.fingerprint
    assert message.startswith(
        f"data.source.path: {path} changed since the run recorded it (fingerprint {fingerprint[:12]}"
    )
    assert message.endswith("restore that version, or train again with this data")


def test_a_source_error_is_one_line_and_exit_2_in_the_cli(tmp_path):
    tiny_table(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  source: {kind: csv, path: t.csv, label: Target}\n")
    for verb in (["data", str(config)], ["run", str(config)]):
        result = runner.invoke(app, verb)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            f"error: {tmp_path / 't.csv'}: no column 'Target' (data.source.label); did you mean 'target'? "
            "the columns: a, b, const, target"
        ]


# -- scikit-learn's datasets through load_data, `mlp-lab data` and `mlp-lab run` ------------------


def sklearn_files(root: Path) -> dict[str, Path]:
    """Breast cancer as CSV (label names), wine and digits as .npz, digits as a PNG folder, iris
    through a python source: the files a user would have."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    cancer = load_breast_cancer()
    table = write_csv(
        root / "cancer.csv",
        [*cancer.feature_names, "diagnosis"],
        [[*row, cancer.target_names[t]] for row, t in zip(cancer.data, cancer.target, strict=True)],
    )
    wine = load_wine()
    np.savez(root / "wine.npz", x=wine.data, y=wine.target)
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    np.savez(
        root / "digits.npz", x=pixels[:1500], y=digits.target[:1500], x_test=pixels[1500:], y_test=digits.target[1500:]
    )
    for i, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        (root / "digits" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((16, 16), Image.Resampling.NEAREST).save(
            root / "digits" / str(label) / f"{i}.png"
        )
    (root / "iris.py").write_text(
        "from sklearn.datasets import load_iris\n\n\n"
        "def iris():\n"
        "    d = load_iris()\n"
        "    return {'x': d.data, 'y': d.target, 'classes': list(d.target_names)}\n"
    )
    return {"csv": table, "npz": root / "wine.npz", "digits_npz": root / "digits.npz", "folder": root / "digits"}


# Per source: its fields, classes, input shape, examples, and its name in reports.
SOURCES = {
    "csv": ("path: cancer.csv, label: diagnosis", ("benign", "malignant"), (30,), 569, "cancer"),
    "npz": ("path: wine.npz", ("0", "1", "2"), (13,), 178, "wine"),
    "digits_npz": ("path: digits.npz", tuple("0123456789"), (1, 8, 8), 1797, "digits"),
    "folder": ("path: digits, image_size: 16", tuple("0123456789"), (1, 16, 16), 1797, "digits"),
    "python": ("target: iris.py:iris", ("setosa", "versicolor", "virginica"), (4,), 150, "iris"),
}


@pytest.fixture(scope="module")
def sklearn_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sklearn")
    sklearn_files(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_sklearn_datasets_through_load_data_and_one_run(sklearn_dir, name):
    fields, classes, shape, total, reported = SOURCES[name]
    kind = {"digits_npz": "npz"}.get(name, name)
    config = sklearn_dir / f"{name}.yaml"
    config.write_text(
        f"name: {name}\ndata:\n  source: {{kind: {kind}, {fields}}}\nmodel: {{hidden_sizes: [32]}}\n"
        f"train: {{epochs: 2, batch_size: 16, optimizer: {{lr: 0.01}}}}\noutput: {{dir: {sklearn_dir / 'runs'}}}\n"
    )
    cfg = load_config(config)
    data = load_data(cfg.data)
    assert data.info.classes == classes and facts_for(cfg.data).input_shape == shape
    assert len(data.train) + len(data.val) + len(data.test) == total
    described = runner.invoke(app, ["data", str(config), "--out-dir", str(sklearn_dir / "out"), "--json"])
    assert described.exit_code == 0, described.output
    assert ("features" in described.stdout) == (len(shape) == 1)
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    summary = yaml.safe_load((sklearn_dir / "runs" / name / "summary.json").read_text())
    assert summary["dataset"] == reported
    # Far better than guessing the commonest class after two epochs: the data reached the model intact.
    assert summary["test/acc"] > 0.7


def test_an_edited_python_source_for_a_recorded_run_is_refused(tmp_path):
    (tmp_path / "make.py").write_text("def make():\n    return [[0.0], [1.0], [2.0], [3.0]], [0, 1, 0, 1]\n")
    fields = {"kind": "python", "target": f"{tmp_path}/make.py:make"}
    recorded = validate_config({"data": {"source": fields}}, "test")
    (tmp_path / "make.py").write_text("def make():\n    return [[0.0], [1.0], [2.0], [3.0]], [1, 1, 0, 0]\n")
    message = error_of(validate_config(config_to_dict(recorded), "test").data)
    assert message.startswith(f"data.source.target: {tmp_path}/make.py changed since the run recorded it")


def test_augmenting_a_table_is_refused(tmp_path):
    cfg = DataConfig(
        source={"kind": "csv", "path": str(tiny_table(tmp_path)), "label": "target"}, augment={"rotation": 10}
    )
    assert error_of(cfg) == (
        "data.augment: rotates, shifts and blurs images; t is a table of 3 features: leave data.augment out for it"
    )


def test_a_torchvision_class_without_splits_gets_a_held_out_test_split(tmp_path):
    # FakeData: no files, no network, no train flag: read once, test_fraction held out.
    cfg = DataConfig(
        source={
            "kind": "torchvision",
            "name": "FakeData",
            "args": {"size": 50, "image_size": [1, 6, 6], "num_classes": 3},
        },
        root=str(tmp_path),
    )
    data = load_data(cfg)
    assert data.info.image_shape == (1, 6, 6) and data.info.classes == ("0", "1", "2")
    assert (len(data.train) + len(data.val), len(data.test)) == (40, 10)


def test_mlp_lab_data_config_summarises_a_tables_features(tmp_path):
    tiny_table(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  source: {kind: csv, path: t.csv, label: target}\n")
    result = runner.invoke(app, ["data", str(config), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "table: 3 numeric features, standardised by the train split's mean and std" in result.output
    assert "first 3 of 3 features" in result.output and "const" in result.output
    assert "sample grid" not in result.output and not (tmp_path / "out").exists()
    folder = write_folder(tmp_path / "pics", {"a": 4, "b": 4})
    config.write_text(f"data:\n  source: {{kind: folder, path: {folder}, image_size: 6}}\n")
    result = runner.invoke(app, ["data", str(config), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "pics_samples.png").is_file()
