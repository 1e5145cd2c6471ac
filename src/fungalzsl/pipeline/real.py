"""The real-image part of ``fungalzsl run``: find the labelled real set a config names
(``evaluate.real``), and write ``OUT/report.md``/``.html`` with the synthetic test and the real set
side by side (each evaluation's full report stays in ``OUT/eval/`` and ``OUT/eval-real/``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fungalzsl.eval.report import Block, evaluation_blocks, fmt, write_blocks
from fungalzsl.eval.settings import EvaluateSettings
from fungalzsl.io import sha256_json
from fungalzsl.labelled import read_labelled
from fungalzsl.pipeline.stages import Stage

REAL_DIR = "eval-real"


def find_real_set(path: str | Path, config: Path) -> Path | None:
    """``path`` as given (absolute, or relative to the working directory), else relative to the
    repository the config file lives in (the nearest folder above it with a ``pyproject.toml``:
    ``data/real-dev`` from a clean clone, whatever the working directory); None when it is absent."""
    p = Path(path).expanduser()
    if p.is_dir() or p.is_absolute():
        return p if p.is_dir() else None
    for parent in Path(config).resolve().parents:
        if (parent / p).is_dir():
            return parent / p
        if (parent / "pyproject.toml").is_file():
            break
    return None


def real_stage(
    evaluate: EvaluateSettings,
    config: Path,
    out: Path,
    run_dir: Path,
    log: Callable[[str], Any],
    text_store: Any = None,
) -> Stage | None:
    """The ``evaluate-real`` stage (OUT/eval-real/), or None — with a note when the configured folder
    is absent — and then no stale real-set numbers are left in OUT. ``text_store``: the
    ``fungalzsl.eval.textcache.TextStore`` the synthetic evaluation filled (the same descriptions)."""
    real_dir = find_real_set(evaluate.real, config) if evaluate.real else None
    if evaluate.real and real_dir is None:
        log(f"[evaluate-real] {evaluate.real} not found (from {Path.cwd()} or beside {config}); skipped")
    if real_dir is None:
        shutil.rmtree(out / REAL_DIR, ignore_errors=True)
        return None

    def do_evaluate_real(resume: bool) -> None:
        from fungalzsl.eval.evaluate import evaluate_run

        shutil.rmtree(out / REAL_DIR, ignore_errors=True)
        evaluate_run(run_dir, real_dir, out / REAL_DIR, split=None, baseline=evaluate.baseline,
                     classifier=evaluate.classifier, n_boot=evaluate.n_boot, text_store=text_store)  # fmt: skip

    return Stage(
        "evaluate-real",
        {**evaluate.model_dump(exclude={"split", "real"}), "real": real_set_key(real_dir)},
        do_evaluate_real,
        after=["train", "describe"],
        outputs=[out / REAL_DIR / "metrics.json", out / REAL_DIR / "report.html"],
    )


def real_set_key(root: Path) -> dict[str, Any]:
    """What the real evaluation's cache key hashes: the folder and its labelled files (names, labels,
    sources, sizes), so an added or relabelled image reruns it."""
    items = read_labelled(root)
    listing = [[str(i.path.relative_to(root)), i.label, i.source, i.path.stat().st_size] for i in items]
    return {"root": str(root.resolve()), "images": sha256_json(listing)[:16], "n": len(items)}


def real_summary_line(m: dict[str, Any]) -> str:
    """One line for the console: Recall@1, balanced accuracy, the weakest class, n."""
    recalls = {c: v["recall"] for c, v in m["per_class"].items()}
    worst = min(recalls, key=lambda c: recalls[c])
    return (
        f"real set Recall@1 = {m['recall@1']:.4f}  balanced acc = {m['balanced_accuracy']:.4f}  "
        f"min class recall = {recalls[worst]:.2f} ({worst})  n = {m['n']}"
    )


def write_run_report(out: Path) -> Path:
    """OUT/report.md and report.html: the paper's synthetic test, then the real set when it was
    evaluated, every number read from the two metrics.json files."""
    synthetic = json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8"))
    real_report = f" and {REAL_DIR}/report.html (real images)" if (out / REAL_DIR).is_dir() else ""
    blocks = [
        Block("h1", f"fungalzsl run: {out}"),
        Block("p", f"Full reports with figures: eval/report.html (synthetic test){real_report}."),
        *_retitled(evaluation_blocks(synthetic, {}), f"Synthetic test (the paper's): {synthetic['data']}"),
    ]
    real_file = out / REAL_DIR / "metrics.json"
    if real_file.is_file():
        real = json.loads(real_file.read_text(encoding="utf-8"))
        title = f"Real images: {real['data']} ({real['n']} images, balanced accuracy {fmt(real['balanced_accuracy'])})"
        blocks += _retitled(evaluation_blocks(real, {}), title)
    write_blocks(out, blocks, f"fungalzsl run: {out}")
    return out / "report.html"


def _retitled(blocks: list[Block], title: str) -> list[Block]:
    """An evaluation's blocks under one run report: its title becomes a section heading."""
    return [Block("h2", title) if b.kind == "h1" else b for b in blocks]
