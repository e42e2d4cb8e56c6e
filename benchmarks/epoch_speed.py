"""Epoch-speed benchmark on real FashionMNIST; the same as `mlp-lab bench`.

Usage: python benchmarks/epoch_speed.py [CONFIG] [--repeats 3] [--threads N] [--json FILE]
Prints (a) mlp-lab's epoch, (b) the tutorial DataLoader pipeline, (c) the compute floor, (r) the
matmul roofline, the ratios trainer/roofline, a/c and b/a, and the peak RSS of (a). See mlp_lab/inspect/bench.py for what each one measures.
"""

import sys

from mlp_lab.cli import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]])
