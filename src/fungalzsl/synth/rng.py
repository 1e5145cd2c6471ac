"""The random streams of the generator: one independent stream per image (and per sequence cell).

Image ``i`` of a dataset made with seed ``s`` draws from ``default_rng(SeedSequence([s, i]))``; a
sequence's cells draw from ``SeedSequence([s, SEQUENCE_STREAM, q, ...])``. Because a stream depends
only on its key, the same image comes out whatever the number of workers, ``--shard`` parts or
``--resume`` restarts. This module depends on nothing else in ``synth``, so the planner and the
sequence model can both use it without importing each other."""

from __future__ import annotations

import numpy as np

SEQUENCE_STREAM = 1 << 20  # keeps a sequence's own stream apart from any image index


def image_rng(seed: int, *key: int) -> np.random.Generator:
    """The random stream of one image (or one sequence cell), independent of all others."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in key)]))
