"""``fungalzsl describe import``: bring descriptions written elsewhere (the authors' released captions,
GPT/Claude/Gemini outputs saved as JSON, JSONL, CSV or one-per-line TXT) into the description-set format.

Prompt echoes are stripped: the released captions all start with the prompt that produced them, which names
the class without describing it (a label leak). Known prompts (ours) are removed exactly; an unknown prompt
shows up as opening sentences shared by most captions of a class, and those are removed too.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import read_jsonl, read_text_file, write_jsonl
from fungalzsl.text.cleanup import (
    NearDuplicateIndex,
    clean_text,
    common_prompt_prefix,
    mask_names,
    name_forms,
)
from fungalzsl.text.generate import PAPER_CLASSES
from fungalzsl.text.prompts import load_prompts
from fungalzsl.text.records import make_record

TEXT_KEYS = ("text", "description", "caption", "desc")
CLASS_KEYS = ("class", "class_label", "label", "category")


@dataclass
class ImportReport:
    out: Path
    set_name: str
    counts: Counter[str] = field(default_factory=Counter)
    stripped_prefix: dict[str, str] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)


def _first_key(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in obj:
            return obj[k]
    return None


def _rows_from_objects(items: list[Any], src: Path) -> list[tuple[str | None, str]]:
    rows = []
    for i, it in enumerate(items):
        if isinstance(it, str):
            rows.append((None, it))
            continue
        text = _first_key(it, TEXT_KEYS) if isinstance(it, dict) else None
        if not isinstance(text, str):
            raise fail(
                f"{src}: item {i + 1} has no text field ({'/'.join(TEXT_KEYS)})",
                'each item needs a text and a class field, e.g. {"class": ..., "text": ...}',
            )
        cls = _first_key(it, CLASS_KEYS)
        rows.append((str(cls) if cls is not None else None, text))
    return rows


def read_source(src: Path, fmt: str = "auto") -> list[tuple[str | None, str]]:
    """(class or None, text) rows from a JSON list/mapping, JSONL, CSV (header) or TXT (one per line)."""
    if not src.is_file():
        raise fail(f"{src} does not exist", "check the path")
    fmt = src.suffix.lower().lstrip(".") if fmt == "auto" else fmt
    try:
        if fmt == "json":
            data = json.loads(read_text_file(src))
            if isinstance(data, dict):  # {"spore": [...], "hyphae": [...]} (CuPL-style)
                if not all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()):
                    # str(t) would import 1 or None as the "descriptions" '1' and 'None'
                    raise fail(f"{src}: a JSON mapping must map class -> list of texts", "fix the file")
                return [(str(c), t) for c, ts in data.items() for t in ts]
            if not isinstance(data, list):
                raise fail(f"{src}: expected a JSON list of records", "fix the file")
            return _rows_from_objects(data, src)
        if fmt == "jsonl":
            return _rows_from_objects(read_jsonl(src), src)
        if fmt in ("csv", "tsv"):
            with open(src, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
                header = [h.strip().lower() for h in (reader.fieldnames or [])]
                tk = next((k for k in TEXT_KEYS if k in header), None)
                if tk is None:
                    raise fail(
                        f"{src}: no text column ({'/'.join(TEXT_KEYS)}) in the header", "add a header row"
                    )
                ck = next((k for k in CLASS_KEYS if k in header), None)
                rows = []
                for row in reader:
                    low = {(k or "").strip().lower(): v for k, v in row.items()}
                    rows.append((low.get(ck) if ck else None, low.get(tk) or ""))
                return rows
        if fmt == "txt":
            return [(None, ln) for ln in read_text_file(src).splitlines() if ln.strip()]
    except json.JSONDecodeError as e:
        raise fail(f"{src} is not valid JSON ({e.msg} at line {e.lineno})", "fix the file") from None
    except UnicodeDecodeError:
        raise fail(f"{src} is not UTF-8 text", "convert it to UTF-8") from None
    except csv.Error as e:
        raise fail(f"{src} is not valid CSV ({e})", "fix the file") from None
    raise fail(f"cannot tell the format of {src}", "use .json, .jsonl, .csv, .tsv or .txt, or pass --format")


def canonical_class(label: str, known: tuple[str, ...] = PAPER_CLASSES) -> str:
    """Map label spellings ('Spores', 'hypha', 'Mycelia') onto known class names; others pass through."""
    low = label.strip().lower()
    for c in known:
        if low in name_forms(c):
            return c
    return label.strip()


def import_descriptions(
    src: str | Path,
    out: str | Path,
    *,
    fmt: str = "auto",
    cls: str | None = None,
    set_name: str | None = None,
    model: str = "unknown",
    class_map: dict[str, str] | None = None,
    strip_prompts: bool = True,
    mask_class_name: bool = False,
    dedupe: bool = False,
    min_words: int = 1,
    overwrite: bool = False,
) -> ImportReport:
    """Convert ``src`` into a description set at ``out``; written atomically (all or nothing)."""
    src, out = Path(src), Path(out)
    if out.suffix != ".jsonl":
        raise fail(f"--out {out} must be a .jsonl file", "e.g. --out descriptions/release.jsonl")
    if out.exists() and not overwrite:
        raise fail(f"{out} already exists", "pass --overwrite to replace it, or choose another --out")
    rows = read_source(src, fmt)
    if not rows:
        raise fail(f"{src} holds no descriptions", "check the file")
    class_map = {k.strip().lower(): v for k, v in (class_map or {}).items()}
    by_class: dict[str, list[str]] = {}
    for i, (c, t) in enumerate(rows):
        c = cls or c
        if not c:
            raise fail(
                f"{src}: entry {i + 1} has no class", "pass --class NAME for files without a class column"
            )
        c = class_map.get(c.strip().lower(), canonical_class(c))
        by_class.setdefault(c, []).append(t)
    set_name = set_name or out.stem
    report = ImportReport(out=out, set_name=set_name)
    ours = load_prompts()
    records = []
    for c, texts in by_class.items():
        echoes = ours.rendered(c, 10, 70)
        if strip_prompts:
            prefix = common_prompt_prefix(texts)
            if prefix:
                report.stripped_prefix[c] = prefix
                echoes = [prefix, *echoes]
        index = NearDuplicateIndex() if dedupe else None
        for raw in texts:
            text = clean_text(raw, echoes if strip_prompts else ())
            if mask_class_name:
                text = mask_names(text, name_forms(c))
            if not text:  # e.g. a released caption that is nothing but its prompt
                report.dropped["empty"] += 1
                continue
            if len(text.split()) < min_words:
                report.dropped["too_short"] += 1
                continue
            if index is not None and (dup := index.add_if_new(text)):
                report.dropped[f"{dup}_duplicate"] += 1
                continue
            records.append(
                make_record(c, text, set_name=set_name, backend="import", model=model, source=src.name,
                            sampling={"prompt_stripped": bool(strip_prompts), "masked_class_name": mask_class_name})
            )  # fmt: skip
            report.counts[c] += 1
    write_jsonl(out, records)
    return report
