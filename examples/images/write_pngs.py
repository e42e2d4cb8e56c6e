"""Write scikit-learn's handwritten digits (1,797 scans, 8x8 pixels, 16 grey levels) as PNG files
in one folder per class: examples/images/digits/0/0000.png ... digits/9/1796.png. Real data no one
here made, bundled with scikit-learn (no network); the layout any folder of labelled pictures has.

Run: python examples/images/write_pngs.py   (a few seconds)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_pngs(folder: Path) -> Path:
    """One grey PNG per digit under `folder`/<class>/, ink white on black as MNIST's is."""
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
        Image.fromarray(pixels, mode="L").save(target / f"{index:04d}.png")
    return folder


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "digits"
    print(f"wrote {write_pngs(out)}")
