"""The description-set file format: ``descriptions/<set>.jsonl``, one JSON object per description.

Required keys: ``class`` and ``text``. Written by ``fungalzsl describe`` with provenance: ``set``,
``backend``, ``model``, ``prompt_id``, ``temperature``, ``sampling`` (dict), ``seed``, ``created_at``
(ISO 8601, UTC) and ``hash`` (sha256 of the text). Readers need only ``class`` and ``text``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.errors import FungalError, fail
from fungalzsl.io import read_jsonl, read_text_file


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class DescriptionSet:
    """Descriptions grouped by class, in file order, with the set's name and content hash."""

    name: str
    by_class: dict[str, list[str]]
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.by_class)

    @property
    def hash(self) -> str:
        """Content hash over (class, text) pairs, independent of provenance fields and file order."""
        h = hashlib.sha256()
        for cls in sorted(self.by_class):
            for t in sorted(self.by_class[cls]):
                h.update(f"{cls}\t{t}\n".encode())
        return h.hexdigest()

    def require_classes(self, classes: list[str]) -> None:
        """Fail with one line if the set lacks descriptions for any of ``classes``."""
        missing = [c for c in classes if not self.by_class.get(c)]
        if missing:
            where = self.path or self.name
            raise fail(
                f"description set {where} has no descriptions for class(es): {', '.join(missing)}",
                "generate them with 'fungalzsl describe' or pick another set",
            )

    @classmethod
    def from_records(
        cls, records: list[dict[str, Any]], name: str, path: Path | None = None
    ) -> DescriptionSet:
        by_class: dict[str, list[str]] = {}
        for i, r in enumerate(records):
            c, t = r.get("class"), r.get("text")
            if not isinstance(c, str) or not isinstance(t, str) or not c or not t.strip():
                raise fail(
                    f"{path or name}: record {i + 1} lacks a 'class' or 'text' string",
                    "each line must be a JSON object with 'class' and 'text'",
                )
            by_class.setdefault(c, []).append(t)
        if not by_class:
            raise fail(
                f"description set {path or name} is empty", "generate descriptions with 'fungalzsl describe'"
            )
        return cls(name=name, by_class=by_class, records=records, path=path)


def load_description_set(path: str | Path) -> DescriptionSet:
    """Read a descriptions JSONL file. The set name is the records' ``set`` field, else the file stem."""
    path = Path(path)
    try:
        records = read_jsonl(path)
    except FungalError:
        _refuse_whole_json_document(path)
        raise
    names = {r.get("set") for r in records if r.get("set")}
    name = names.pop() if len(names) == 1 else path.stem
    return DescriptionSet.from_records(records, name=name, path=path)


def _refuse_whole_json_document(path: Path) -> None:
    """A file that is one JSON document (an array or an object over many lines, as the authors'
    ``generated_captions.json``) is not JSON Lines; its first line alone is not valid JSON, which is a
    misleading thing to say about a valid file. Say what it is and how to convert it instead."""
    import json

    try:
        doc = json.loads(read_text_file(path, "descriptions file"))
    except (ValueError, FungalError):
        return  # not one document either: the JSONL error stands
    if isinstance(doc, (list, dict)):
        kind = "array" if isinstance(doc, list) else "object"
        raise fail(
            f"{path} is one JSON {kind} (e.g. the authors' generated_captions.json), not JSON Lines with "
            "one description per line",
            f"convert it once: fungalzsl describe import {path} --out {path.with_suffix('.jsonl').name}",
        )


# ---- writing records (used by `fungalzsl describe` and `fungalzsl describe import`) ----

PROVENANCE_KEYS = (
    "set",
    "backend",
    "model",
    "prompt_id",
    "temperature",
    "sampling",
    "seed",
    "created_at",
    "hash",
)


def make_record(
    cls: str,
    text: str,
    *,
    set_name: str,
    backend: str,
    model: str,
    prompt_id: str | None = None,
    temperature: float | None = None,
    sampling: dict[str, Any] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One description record with full provenance; ``hash`` is the sha256 of ``text``."""
    from datetime import datetime, timezone

    rec: dict[str, Any] = {
        "class": cls,
        "text": text,
        "set": set_name,
        "backend": backend,
        "model": model,
        "prompt_id": prompt_id,
        "temperature": temperature,
        "sampling": sampling or {},
        "seed": seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hash": text_hash(text),
    }
    rec.update(extra)
    return rec


def read_records_if_any(path: str | Path) -> list[dict[str, Any]]:
    """The records already in ``path`` (empty when it does not exist) — the basis of resuming."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    return read_jsonl(path)
