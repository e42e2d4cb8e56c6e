"""Write scikit-learn's breast-cancer table (569 tumours, 30 numeric features) as a CSV beside this
script: examples/tabular/breast_cancer.csv, one row per tumour, the class in a `diagnosis` column
(malignant | benign). Real data no one here made, bundled with scikit-learn (no network).

Run: python examples/tabular/write_csv.py   (a second or two)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer


def write_csv(path: Path) -> Path:
    """The table at `path`: the 30 feature columns, then `diagnosis`."""
    table = load_breast_cancer()
    # Column names without spaces, so that data.source.features can list them in YAML as they are.
    columns = [name.replace(" ", "_") for name in table.feature_names]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, "diagnosis"])
        for row, label in zip(table.data, table.target):
            writer.writerow([*(f"{value:.6g}" for value in row), table.target_names[label]])
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "breast_cancer.csv"
    print(f"wrote {write_csv(out)}")
