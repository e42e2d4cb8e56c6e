"""Dataset facts: one definition, which the schema, the loader and a loaded dataset agree with."""

import pytest

from mlp_lab.config.datasets import DATASETS, display_name
from mlp_lab.config.schema import Choices, DataConfig
from mlp_lab.data import load as data
from mlp_lab.data import registry


def test_every_dataset_the_schema_allows_has_its_facts_and_a_loader():
    # A dataset added to the schema without its facts (or its files' loader) fails here, not in a run.
    choices = next(m for m in DataConfig.model_fields["dataset"].metadata if isinstance(m, Choices))
    assert choices() == tuple(DATASETS) == ("fashion_mnist", "mnist", "cifar10")
    assert tuple(registry.SOURCES) == tuple(DATASETS)
    assert all(source.facts is DATASETS[name] for name, source in registry.SOURCES.items())


def test_a_name_no_source_registered_is_refused_as_before():
    with pytest.raises(ValueError, match="Input should be 'fashion_mnist', 'mnist' or 'cifar10'"):
        DataConfig(dataset="svhn")
    with pytest.raises(ValueError, match="Input should be"):
        DataConfig(dataset=5)


def test_the_facts_are_those_of_the_real_datasets():
    mnist, fashion, cifar = DATASETS["mnist"], DATASETS["fashion_mnist"], DATASETS["cifar10"]
    assert (mnist.in_features, mnist.num_classes, mnist.channels, mnist.classes[7]) == (784, 10, 1, "7")
    assert (fashion.in_features, fashion.classes[0], fashion.classes[-1]) == (784, "T-shirt/top", "Ankle boot")
    assert (cifar.image_shape, cifar.in_features, cifar.channels, cifar.classes[3]) == ((3, 32, 32), 3072, 3, "cat")
    assert [display_name(name) for name in DATASETS] == ["FashionMNIST", "MNIST", "CIFAR-10"]
    assert display_name("svhn") == "svhn"  # an unknown name is shown as written


def test_a_loaded_dataset_is_described_by_its_facts(idx_dir, tmp_path):
    info = data.load_data(
        DataConfig(dataset="mnist", root=str(tmp_path / "data"), download=False), extra_dirs=[idx_dir]
    ).info
    facts = DATASETS["mnist"]
    assert (info.classes, info.image_shape, info.in_features, info.num_classes) == (
        facts.classes,
        facts.image_shape,
        facts.in_features,
        facts.num_classes,
    )
