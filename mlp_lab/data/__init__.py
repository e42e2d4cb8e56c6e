"""Datasets as tensors on the device: the registry of sources (built-in and registered), find,
verify, load, split, normalise, augment."""
