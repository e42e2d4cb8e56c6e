"""The model families behind one registry (`registry`): the MLP (`mlp`) and the CNN (`cnn`), each
registered by its own module, as a user's family is. Importing this package registers both, so
whatever builds a model through `registry.build_model` finds them."""

from mlp_lab.models import cnn, mlp  # noqa: F401  (importing registers the built-in families)
