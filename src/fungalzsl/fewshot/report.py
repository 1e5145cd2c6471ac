"""``fungalzsl fewshot`` as a Python API: embed DIR once with a run, run the protocol
(:mod:`fungalzsl.fewshot.protocol`), write ``OUT/results.json``, ``OUT/results.md`` (a table) and
``OUT/fewshot.png`` (balanced accuracy against k, 95 % intervals, zero-shot at k = 0). OUT is written
whole or not at all (:func:`fungalzsl.outdir.staged_dir`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.fewshot.adapter import ADAPTER_METHODS
from fungalzsl.io import atomic_write_json, atomic_write_text
from fungalzsl.outdir import staged_dir

FEWSHOT_FILES = ("results.json", "results.md", "fewshot.png")
_METHOD_NAMES = {
    "tip": "Tip-Adapter",
    "probe": "linear probe",
    "prototype": "prototype",
    "anchored": "text-anchored prototype",
    "zeroshot": "zero-shot, same queries",
}
DEFAULT_METHODS = ("zeroshot", *ADAPTER_METHODS)


def _cell(summary: dict[str, Any]) -> str:
    lo, hi = summary["ci95"]
    return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def results_table(results: dict[str, Any]) -> str:
    """Markdown: one row per k and method, then balanced accuracy per source."""
    zs = results["zero_shot"]
    sources = sorted(zs["per_source"])
    lines = [
        f"# Few-shot results: {results['run']} on {results['data']}",
        "",
        f"{results['repeats']} draws per k, seed {results['seed']}; mean [95% CI]. Images per class: "
        + ", ".join(f"{c} {n}" for c, n in results["images_per_class"].items()),
        "",
        "| k | features | views | method | shots per class | balanced accuracy | accuracy | "
        + " | ".join(sources)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(sources),
    ]
    zs_cells = {
        key: f"{zs[key]:.3f} [{zs['ci95'][key][0]:.3f}, {zs['ci95'][key][1]:.3f}]"
        for key in ("balanced_accuracy", "accuracy")
    }
    per = " | ".join(f"{zs['per_source'][s]['balanced_accuracy']:.3f}" for s in sources)
    lines.append(
        f"| 0 | embedding | 1 | zero-shot | 0 | {zs_cells['balanced_accuracy']} | {zs_cells['accuracy']} | {per} |"
    )
    for row in results["results"]:
        shots = "/".join(str(n) for n in row["shots_per_class"].values()) + (
            " (capped)" if row["capped"] else ""
        )
        per = " | ".join(
            f"{row['per_source'][s]['balanced_accuracy']:.3f}" if s in row["per_source"] else "-"
            for s in sources
        )
        arm = f"{row.get('features', 'embedding')} | {row.get('views', 1)}"
        lines.append(f"| {row['k']} | {arm} | {_METHOD_NAMES[row['method']]} | {shots} | {_cell(row['balanced_accuracy'])} "
                     f"| {_cell(row['accuracy'])} | {per} |")  # fmt: skip
    lines += ["", "Per-source columns: balanced accuracy over the classes that source has (mean over draws)."]
    return "\n".join(lines) + "\n"


def plot_fewshot(results: dict[str, Any], path: Path) -> None:
    """Balanced accuracy against k per method, with the 95 % intervals; zero-shot as the k = 0 point."""
    from fungalzsl.eval.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6, 4))
    zs = results["zero_shot"]
    arms = dict.fromkeys(
        (r["method"], r.get("features", "embedding"), r.get("views", 1)) for r in results["results"]
    )
    several = len({a[1:] for a in arms}) > 1
    for method, features, views in arms:
        rows = [r for r in results["results"] if (r["method"], r.get("features", "embedding"), r.get("views", 1))
                == (method, features, views)]  # fmt: skip
        label = _METHOD_NAMES[method] + (f" ({features}, {views} view{'s' * (views > 1)})" if several else "")
        ks = [0] + [r["k"] for r in rows]
        mean = [zs["balanced_accuracy"]] + [r["balanced_accuracy"]["mean"] for r in rows]
        lo = [zs["ci95"]["balanced_accuracy"][0]] + [r["balanced_accuracy"]["ci95"][0] for r in rows]
        hi = [zs["ci95"]["balanced_accuracy"][1]] + [r["balanced_accuracy"]["ci95"][1] for r in rows]
        (line,) = ax.plot(ks, mean, marker="o", label=label)
        ax.fill_between(ks, lo, hi, color=line.get_color(), alpha=0.15)
    ax.axhline(1 / len(results["classes"]), color="grey", ls=":", lw=1, label="chance")
    ax.set(
        xlabel="shots per class (k)", ylabel="balanced accuracy", ylim=(0, 1.02), title="few-shot adaptation"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save(fig, path, 1)


def fewshot_run(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    ks: Sequence[int] = (1, 2, 5, 10),
    repeats: int = 10,
    seed: int = 0,
    methods: Sequence[str] = DEFAULT_METHODS,
    batch_size: int = 32,
    device: str = "cpu",
    features: Sequence[str] = ("embedding",),
    views: Sequence[int] = (1,),
) -> dict[str, Any]:
    """The protocol on ``data`` with ``run_dir``, for every feature kind and view count (the arms;
    ``anchored`` is left out on backbone features); returns what ``OUT/results.json`` holds."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fungalzsl.fewshot.adapt import embed_labelled
    from fungalzsl.fewshot.features import check_features
    from fungalzsl.fewshot.protocol import ZERO_SHOT, run_protocol, zero_shot
    from fungalzsl.labelled import read_labelled
    from fungalzsl.predict.classifier import Classifier

    ks = sorted(set(ks))
    if not ks or ks[0] < 1 or repeats < 1:
        raise fail(f"--k {ks} and --repeats {repeats} must be positive", "e.g. --k 1,2,5,10 --repeats 10")
    known = (ZERO_SHOT, *ADAPTER_METHODS)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise fail(f"unknown method(s) {', '.join(unknown)}", f"choose from {', '.join(known)}")
    arms = [(f, v) for f in dict.fromkeys(features) for v in sorted(set(views))]
    for f, v in arms:
        check_features(f, v)
    with staged_dir(out, FEWSHOT_FILES, "a few-shot evaluation") as stage:
        clf = Classifier.load(run_dir, device=device)
        if clf.adapter is not None:
            raise fail(f"{run_dir} is already adapted", "run the protocol on the run it was adapted from")
        items = read_labelled(data, clf.classes)
        t0 = time.perf_counter()
        embedded = embed_labelled(
            clf.model, items, clf.classes, "images", batch_size, max(v for _, v in arms)
        )
        embed_s = time.perf_counter() - t0
        with torch.no_grad():
            zs_logits = clf.scores(embedded.emb)
        rows: list[dict[str, Any]] = []
        with Progress(TextColumn("[bold]few-shot draws"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True)) as prog:  # fmt: skip
            task = prog.add_task("draws", total=len(ks) * repeats * len(arms))
            for f, v in arms:
                # zero-shot does not depend on the arm: scored once; anchored needs the text's space
                skip = {"anchored"} if f == "backbone" else set()
                skip |= {ZERO_SHOT} if (f, v) != arms[0] else set()
                arm_methods = [m for m in methods if m not in skip]
                body = run_protocol(embedded, zs_logits, clf.classes, clf.logit_scale, ks=ks, repeats=repeats,
                                    methods=arm_methods, seed=seed, advance=lambda: prog.advance(task),
                                    class_embeddings=clf.class_embeddings, features=f, views=v)  # fmt: skip
                rows += body["results"]
        results = {
            "run": str(run_dir),
            "data": str(data),
            "classes": clf.classes,
            "seed": seed,
            "repeats": repeats,
            "ks": ks,
            "methods": list(methods),
            "features": [f for f in dict.fromkeys(features)],
            "views": sorted(set(views)),
            "images_per_class": body["images_per_class"],
            "embed_seconds_per_image": round(embed_s / len(items), 4),
            "zero_shot": zero_shot(embedded, zs_logits, seed),
            "results": sorted(rows, key=lambda r: r["k"]),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(stage / "results.json", results)
        atomic_write_text(stage / "results.md", results_table(results))
        plot_fewshot(results, stage / "fewshot.png")
    return results
