"""The names of the zero-shot classifier constructions and the default prompt template.

Kept in a module of their own, free of torch and of the rest of ``eval``, so that building the CLI
(every command's ``--help``) does not import torch, and so that ``eval.classifier`` can use them
without importing the ``eval`` package's ``__init__`` (which lazily imports the classifier back)."""

METHODS = ("mean", "sim-mean", "max", "template", "waffle", "chils", "attributes", "blend")
DEFAULT_TEMPLATE = "a photo of a {class}."
BLEND_WEIGHT = 0.5  # --classifier blend: weight on the attribute scores, fixed before it was measured
