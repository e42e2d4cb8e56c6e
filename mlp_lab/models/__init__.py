"""The model families behind one registry (`registry`): the MLP (`mlp`), the CNN (`cnn`) and a
user's own model (`user`), each registered by its own module. Importing this package registers them, so
whatever builds a model through `registry.build_model` finds them."""

from mlp_lab.models import cnn, mlp, user  # noqa: F401  (importing registers the built-in families)
