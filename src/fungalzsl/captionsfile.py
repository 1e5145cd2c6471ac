"""The grounded-captions file of a dataset, ``DATA/captions.jsonl`` (written by ``synth.captions``, read
by ``train.inputs``): one row per image with ``file_name`` (SPLIT/CLASS/FILE), ``index``, ``label``,
``captions`` and ``facts``. Here because training reads it and may not import the generator."""

from __future__ import annotations

import json
from pathlib import Path

CAPTIONS_FILE = "captions.jsonl"


def read_captions(data: str | Path) -> dict[str, list[str]]:
    """``file_name`` → captions from ``DATA/captions.jsonl`` (a class view: its original's); {} if none."""
    from fungalzsl.io import read_jsonl

    data = Path(data)
    path = data / CAPTIONS_FILE
    if not path.is_file():
        try:
            origin = json.loads((data / "dataset.json").read_text()).get("view_of")
        except (OSError, ValueError):
            origin = None
        if not origin or not (Path(origin) / CAPTIONS_FILE).is_file():
            return {}
        path = Path(origin) / CAPTIONS_FILE
    return {r["file_name"]: list(r["captions"]) for r in read_jsonl(path)}
