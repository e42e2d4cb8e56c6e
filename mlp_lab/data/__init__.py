"""Datasets as tensors on the device: find, verify, load, split, normalise, augment."""
