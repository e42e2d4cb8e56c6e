"""A tiny user model file and a study over its arguments, for the tests of user code that travels
with runs (MLflow's logged models, Ray workers, process pools, the app)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlp_lab.config.schema import Config, config_to_dict

# A user's own model, as a student writes it: a function of the sizes mlp-lab passes and one
# argument of its own. `{tag}` makes each test's file (and so its content hash) its own: a copy
# another test left in a code cache cannot stand in for the one this test ships.
USER_NET = '''"""A student's own little network."""
import torch.nn as nn

# {tag}


def Net(in_features, num_classes, hidden=8):
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
'''


def write_user_net(folder: Path, tag: str) -> Path:
    """models/my_net.py under `folder`, unique to `tag`."""
    path = folder / "models" / "my_net.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USER_NET.replace("{tag}", tag))
    return path


def user_raw_config(base: Config, target: str, epochs: int = 1, **args) -> dict:
    """`base` (the tests' tiny config) with the user's model `target` and its `args`."""
    raw = config_to_dict(base)
    raw["model"] = {"target": target, "args": args}
    raw["train"] = {**raw["train"], "epochs": epochs}
    return raw


def write_user_config(folder: Path, base: Config, epochs: int = 1, **args) -> Path:
    """configs/user.yaml under `folder`, naming ../models/my_net.py:Net (relative, as users write it)."""
    path = folder / "configs" / "user.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = user_raw_config(base, "../models/my_net.py:Net", epochs, **args)
    raw["name"] = "user"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_user_study(folder: Path, base: Config, output_dir: Path, epochs: int = 1) -> Path:
    """experiments/study.yaml under `folder`: two widths of the user's net (model.args.hidden),
    seeds 0 and 1, `epochs` each, runs under `output_dir`."""
    config = yaml.safe_load(write_user_config(folder, base, epochs).read_text())
    config["output"]["dir"] = str(output_dir)
    (folder / "configs" / "user.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    study = {
        "description": "the width of a user's own net",
        "base": "../configs/user.yaml",
        "factor": "model.args.hidden",
        "reference": "narrow",
        "seeds": [0, 1],
        "arms": {"narrow": {"model.args.hidden": 4}, "wide": {"model.args.hidden": 12}},
    }
    path = folder / "experiments" / "study.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
