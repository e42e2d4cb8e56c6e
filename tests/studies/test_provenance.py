"""What ran: a study's base against the plain config, and the sentences a report opens with."""

from pathlib import Path

import pytest

from mlp_lab.studies.provenance import StudyFacts, base_and_plain

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["dropout", "batch_norm", "optimizer", "lr_schedule"])
def test_the_single_topic_studies_say_their_base_is_the_tuned_baseline(name):
    base, differs, overrides = base_and_plain(REPO / "experiments" / f"{name}.yaml")
    assert base == "../configs/baseline.yaml" and overrides == {"train.epochs": 20}
    assert differs == {
        "model.dropout": (0.0, 0.2),
        "train.epochs": (20, 30),
        "train.scheduler.name": ("constant", "cosine"),
    }


def test_the_ladder_is_on_plain_and_its_report_opens_by_saying_so():
    base, differs, overrides = base_and_plain(REPO / "experiments" / "ladder.yaml")
    assert (base, differs, overrides) == ("../configs/plain.yaml", {}, {})
    facts = StudyFacts([0], {"train.epochs": [2]}, {}, overrides, base, differs, {"threads": [2]})
    assert facts.lines() == [
        "Seeds with runs: 0.",
        "Base: `../configs/plain.yaml`, the course's plain model.",
        "Runs differ from the study file in (a --set): `train.epochs=2`.",
        "Computed with threads 2.",
    ]


def test_mixed_configs_and_booleans_read_as_the_yaml_has_them():
    facts = StudyFacts(
        [0, 1],
        {"model.batch_norm": [True]},
        {"on": {"model.batch_norm": {0: True, 1: False}}},
        {},
        "../configs/plain.yaml",
        None,
    )
    lines = facts.lines()
    assert lines[1] == "Base: `../configs/plain.yaml`."  # no plain config to compare with
    assert lines[2] == "Runs differ from the study file in (a --set): `model.batch_norm=true`."
    assert lines[3] == (
        "**Mixed configs**: arm `on`'s runs disagree in `model.batch_norm` (seed 0: true; seed 1: false); "
        "they are pooled here."
    )
