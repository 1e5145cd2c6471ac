"""report.md and a self-contained report.html, built from the metrics.json on disk (never from numbers
held elsewhere), so the report and the file can never disagree.

A report is a list of blocks (heading, paragraph, table, figure) rendered twice: Markdown with relative
figure links, HTML with the figures embedded as base64."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.io import atomic_write_text, read_jsonl
from fungalzsl.rundir import METRICS_FILE, best_epoch


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "p" | "table" | "figure"
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def fmt_ci(value: Any, ci: Sequence[float] | None) -> str:
    if ci is None or value is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}\n")
        elif b.kind == "h2":
            out.append(f"## {b.text}\n")
        elif b.kind == "p":
            out.append(b.text + "\n")
        elif b.kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join(" --- " for _ in b.header) + "|")
            out.extend("| " + " | ".join(r) + " |" for r in b.rows)
            out.append("")
        elif b.kind == "figure":
            out.append(f"![{b.header[0] if b.header else b.text}]({b.text})\n")
    return "\n".join(out)


def render_html(blocks: Sequence[Block], root: Path, title: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}",
        "</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif b.kind == "figure":
            data = base64.b64encode((root / b.text).read_bytes()).decode("ascii")
            alt = html.escape(b.header[0] if b.header else b.text)
            parts.append(
                f"<figure><img alt='{alt}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{alt}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_blocks(out: Path, blocks: Sequence[Block], title: str) -> None:
    atomic_write_text(out / "report.md", render_markdown(blocks))
    atomic_write_text(out / "report.html", render_html(blocks, out, title))


SUMMARY_KEYS = ("recall@1", "recall@2", "balanced_accuracy", "macro_f1", "ece", "nll", "n")
SUMMARY_HEADER = [
    "Recall@1 [95% CI]",
    "Recall@2",
    "balanced acc [95% CI]",
    "macro F1",
    "ECE [95% CI]",
    "NLL",
    "n",
]


def summary_row(label: str, m: dict[str, Any]) -> list[str]:
    ci = m.get("ci95", {})
    return [label, *(fmt_ci(m.get(k), ci.get(k)) if k in ci else fmt(m.get(k)) for k in SUMMARY_KEYS)]


def training_summary(config: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json's ``training``: what the report says about how the run trained (epochs counted
    from 1; the loss floor only where the run recorded one, i.e. for the multi-positive loss)."""
    if not config or "best_epoch" not in config:
        return None
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    return {
        "best_epoch": best_epoch(config),
        "epochs_run": config.get("epochs_run"),
        "final_train_loss": config.get("final_train_loss"),
        "loss_floor": config.get("loss_floor"),
        "batch_size": train.get("batch_size"),
        "num_classes": len(config.get("classes") or []),
    }


def training_text(t: dict[str, Any]) -> str:
    """The report's sentence on training: the best epoch, the last loss and its floor."""
    text = f"Training: best epoch {fmt(t['best_epoch'])} of {fmt(t['epochs_run'])} (counted from 1)"
    if t.get("final_train_loss") is not None:
        text += f", last epoch's training loss {fmt(t['final_train_loss'], 2)}"
    if t.get("loss_floor") is not None:
        b, k = t["batch_size"], t["num_classes"]
        text += (
            f". The multi-positive loss cannot go below {fmt(t['loss_floor'], 2)} on these batches "
            f"({b} images of {k} classes: each image has ~{b / max(k, 1):.0f} same-class positives, "
            f"floor ≈ 2·ln({b}/{k})), so a loss near it means converged, not stuck"
        )
    return text + "."


def evaluation_blocks(m: dict[str, Any], figures: dict[str, str]) -> list[Block]:
    """The evaluation report: every number comes from the metrics dict ``m`` (read from metrics.json)."""
    classes = m["classes"]
    desc = m.get("descriptions") or {}
    blocks = [
        Block("h1", f"Zero-shot evaluation: {m['model']['source']}"),
        Block(
            "p",
            f"Data: {m['data']} (split {m['split']}), {m['n']} images, classifier '{m['classifier']}', "
            f"descriptions: {desc.get('name', 'stored class embeddings')}"
            f"{' (' + desc['hash'][:12] + ')' if desc.get('hash') else ''}, "
            f"logit scale {fmt(m.get('logit_scale'), 2)}. Intervals are bootstrap 95% "
            f"({m['bootstrap']['resamples']} resamples).",
        ),
        *(
            [
                Block(
                    "p",
                    f"Temperature refitted on the {m['calibration']['split']} split "
                    f"({m['calibration']['n']} images): logit scale {fmt(m['calibration']['logit_scale_before'], 2)}"
                    f" → {fmt(m['calibration']['logit_scale'], 2)}.",
                )
            ]
            if m.get("calibration")
            else []
        ),
        *([Block("p", training_text(m["training"]))] if m.get("training") else []),
        Block("h2", "Summary"),
        Block(
            "table",
            header=["model", *SUMMARY_HEADER],
            rows=[summary_row("fine-tuned" if "baseline" in m else "model", m)]
            + (
                [summary_row(f"zero-shot start ({m['baseline']['model']})", m["baseline"])]
                if "baseline" in m
                else []
            ),
        ),
    ]
    if "by_classifier" in m:
        blocks += [
            Block("h2", "Classifiers (same images, same description set)"),
            Block("table", header=["classifier", *SUMMARY_HEADER],
                  rows=[summary_row(k, v) for k, v in m["by_classifier"].items()]),
        ]  # fmt: skip
    if "by_description_set" in m:
        blocks += [
            Block("h2", "Description sets"),
            Block(
                "table",
                header=["set", *SUMMARY_HEADER],
                rows=[summary_row(k, v) for k, v in m["by_description_set"].items()],
            ),
        ]
    blocks += [
        Block("h2", "Per class"),
        Block(
            "table",
            header=["class", "precision", "recall [95% CI]", "F1", "support", "mean p(true)"],
            rows=[
                [
                    c,
                    fmt(pc["precision"]),
                    fmt_ci(pc["recall"], pc.get("recall_ci95")),
                    fmt(pc["f1"]),
                    fmt(pc["support"]),
                    fmt(pc["mean_probability_true"]),
                ]
                for c, pc in m["per_class"].items()
            ],
        ),
        Block("h2", "Confusion matrix (rows: true, columns: predicted)"),
        Block(
            "table",
            header=["true \\ predicted", *classes],
            rows=[[c, *(str(v) for v in row)] for c, row in zip(classes, m["confusion_matrix"])],
        ),
    ]
    if m.get("per_source"):
        blocks += per_source_blocks(m["per_source"], classes)
    r = m.get("retrieval")
    if r:
        ks = list(r["image_to_text"])
        blocks += [
            Block("h2", "Retrieval over individual descriptions"),
            Block(
                "table",
                header=["direction", *ks],
                rows=[[d.replace("_", " "), *(fmt(r[d][k]) for k in ks)] for d in r],
            ),
        ]
    for key, caption in (
        ("probabilities", "Figure 4 style: predicted probabilities per true class"),
        ("examples", "Figure 5 style: predictions (errors first; green right, red wrong)"),
        ("confusion", "Confusion matrix"),
        ("reliability", "Reliability diagram"),
        ("training", "Training curves (RUN/metrics.jsonl)"),
    ):
        if key in figures:
            blocks.append(Block("figure", figures[key], header=[caption]))
    if m.get("unreadable"):
        blocks += [
            Block("h2", f"Unreadable images ({len(m['unreadable'])})"),
            Block("p", "; ".join(m["unreadable"][:20])),
        ]
    return blocks


def per_source_blocks(per_source: dict[str, Any], classes: Sequence[str]) -> list[Block]:
    """The per-source table: accuracy and count per source, each class as correct/n (recall)."""

    def cell(pc: dict[str, Any] | None) -> str:
        return "–" if pc is None else f"{pc['correct']}/{pc['n']} ({fmt(pc['recall'], 2)})"

    return [
        Block("h2", "Per source (recall per class as correct/n)"),
        Block(
            "table",
            header=["source", "n", "accuracy", *classes],
            rows=[
                [name, str(v["n"]), fmt(v["accuracy"]), *(cell(v["per_class"].get(c)) for c in classes)]
                for name, v in per_source.items()
            ],
        ),
    ]


def write_report(
    out: Path, split: Any, scored: Sequence[Any], base_scored: Sequence[Any], source: Any
) -> None:
    """Draw the figures of an evaluation and write report.md/.html from out/metrics.json."""
    from fungalzsl.eval import plots

    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    fig_dir = out / "figures"
    classes = m["classes"]
    sets = [(s.name, s.probs, split.labels) for s in scored]
    sets += [(f"{s.name} — zero-shot start", s.probs, split.labels) for s in base_scored[:1]]
    figures = {
        "probabilities": plots.plot_probability_distributions(sets, classes, fig_dir / "probabilities.png"),
        "examples": plots.plot_examples(
            split.paths, split.labels, scored[0].probs, classes, fig_dir / "examples.png"
        ),
        "confusion": plots.plot_confusion(m["confusion_matrix"], classes, fig_dir / "confusion.png"),
        "reliability": plots.plot_reliability(m["reliability"], m["ece"], fig_dir / "reliability.png"),
    }
    run_dir = getattr(source, "run_dir", None)
    if run_dir is not None and (run_dir / METRICS_FILE).is_file():
        curves = plots.plot_training_curves(read_jsonl(run_dir / METRICS_FILE), fig_dir / "training.png")
        if curves is not None:
            figures["training"] = curves
    rel = {k: str(f.path.relative_to(out)) for k, f in figures.items()}
    write_blocks(out, evaluation_blocks(m, rel), f"fungalzsl evaluation: {m['model']['source']}")
