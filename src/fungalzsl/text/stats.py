"""``fungalzsl describe stats``: what a description set looks like before you train on it — counts, lengths,
duplicates, prompt echoes, class-name leaks, and how much vocabulary two sets share."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from fungalzsl.text.cleanup import NearDuplicateIndex, common_prompt_prefix, contains_name, name_forms, words
from fungalzsl.text.records import DescriptionSet, load_description_set


def _share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def class_stats(texts: list[str], own: list[str], others: list[str]) -> dict[str, Any]:
    lengths = [len(t.split()) for t in texts]
    exact, near = NearDuplicateIndex(threshold=1.0), NearDuplicateIndex(threshold=0.8)
    exact_flags = [exact.add_if_new(t) is not None for t in texts]
    near_flags = [near.add_if_new(t) is not None for t in texts]
    prefix = common_prompt_prefix(texts)
    return {
        "n": len(texts),
        "words": {
            "min": min(lengths),
            "mean": round(statistics.fmean(lengths), 2),
            "median": statistics.median(lengths),
            "max": max(lengths),
        },
        "distinct": len(texts) - sum(exact_flags),
        "duplicate_rate": _share(exact_flags),
        "near_duplicate_rate": _share(near_flags),  # exact duplicates count as near ones too
        "own_name_rate": _share([contains_name(t, own) for t in texts]),
        "other_name_rate": _share([contains_name(t, others) for t in texts]) if others else 0.0,
        "prompt_echo": prefix,
        "prompt_echo_rate": _share([t.startswith(prefix) for t in texts]) if prefix else 0.0,
    }


def set_stats(ds: DescriptionSet) -> dict[str, Any]:
    """Per-class statistics of one set (leaks use every class of the set as the candidate names)."""
    forms = {c: name_forms(c) for c in ds.classes}
    per_class = {}
    for c, texts in ds.by_class.items():
        others = sorted({f for o in ds.classes if o != c for f in forms[o]}, key=len, reverse=True)
        per_class[c] = class_stats(texts, forms[c], others)
    backends = sorted({f"{r.get('backend')}:{r.get('model')}" for r in ds.records if r.get("backend")})
    return {
        "set": ds.name,
        "path": str(ds.path) if ds.path else None,
        "hash": ds.hash,
        "backends": backends,
        "n": sum(len(v) for v in ds.by_class.values()),
        "classes": per_class,
    }


def vocabulary(ds: DescriptionSet) -> set[str]:
    return {w.lower() for texts in ds.by_class.values() for t in texts for w in words(t)}


def describe_stats(paths: list[str | Path]) -> dict[str, Any]:
    """Stats of each set and the vocabulary Jaccard between every pair of sets."""
    sets = [load_description_set(p) for p in paths]
    labels = [f"{s.name} ({Path(s.path).name})" if s.path else s.name for s in sets]
    vocab = [vocabulary(s) for s in sets]
    overlap = {
        labels[i]: {labels[j]: round(len(vocab[i] & vocab[j]) / max(1, len(vocab[i] | vocab[j])), 4)
                    for j in range(len(sets))}
        for i in range(len(sets))
    }  # fmt: skip
    return {
        "sets": [
            {**set_stats(s), "label": labels[i], "vocabulary": len(vocab[i])} for i, s in enumerate(sets)
        ],
        "vocabulary_jaccard": overlap,
    }


def print_stats(stats: dict[str, Any]) -> None:
    """Rich tables: one row per (set, class); then the vocabulary overlap when there are several sets."""
    from rich.console import Console
    from rich.table import Table

    # Piped output would be cut to 80 columns; a table that wraps every cell is unreadable.
    console = Console(width=None if sys.stdout.isatty() else 140)
    t = Table(title="description sets", show_lines=False)
    for col in ("set", "class", "n", "distinct", "words min/mean/max", "dup", "near-dup", "own name",
                "other name", "prompt echo"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("set", "class") else "right")
    pct = "{:.1%}".format
    for s in stats["sets"]:
        for c, cs in s["classes"].items():
            w = cs["words"]
            t.add_row(
                s["set"], c, str(cs["n"]), str(cs["distinct"]), f"{w['min']}/{w['mean']:.1f}/{w['max']}",
                pct(cs["duplicate_rate"]), pct(cs["near_duplicate_rate"]), pct(cs["own_name_rate"]),
                pct(cs["other_name_rate"]), pct(cs["prompt_echo_rate"]),
            )  # fmt: skip
    console.print(t)
    if len(stats["sets"]) > 1:
        v = Table(title="vocabulary overlap (Jaccard)")
        names = list(stats["vocabulary_jaccard"])
        v.add_column("")
        for n in names:
            v.add_column(n, justify="right")
        for a in names:
            v.add_row(a, *(f"{stats['vocabulary_jaccard'][a][b]:.3f}" for b in names))
        console.print(v)
