"""The baselines that need no fine-tuning beside fine-tuned runs, on a synthetic test split and on the
real development set, side by side in one run (issue 14):

* zero-shot pretrained, prototype, linear probe, Tip-Adapter synthetic cache: each built by
  ``fungalzsl baseline MODEL --method M`` in its own process (so its recorded peak RSS is its own), with
  at most ``--support`` training images per class;
* any fine-tuned run passed with ``--run NAME=PATH`` (its trainable parameters, s/it and peak RSS as
  its config.json / metrics.jsonl recorded them; "—" when it did not).

Every classifier is scored on the same images: the baselines share one frozen model (checked by their
``weights_sha256``), so the images are embedded once for them and once per fine-tuned run.

    python benchmarks/baselines.py --data /tmp/fewshot_bench/default/data --real data/real-dev \\
        --run full=/tmp/fewshot_bench/default/run

Prints a table and writes benchmarks/results/baselines.json (+ baselines.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "baselines.json"
METHODS = ("zeroshot", "prototype", "probe", "tip")


def _build(args: argparse.Namespace, method: str) -> tuple[Path, dict, float]:
    out = args.workdir / method
    cmd = [sys.executable, "-m", "fungalzsl", "baseline", args.model, "--data", str(args.data), "--method",
           method, "--out", str(out), "--support-per-class", str(args.support), "--seed", str(args.seed)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "FUNGALZSL_NO_REEXEC": "1"})
    wall = time.perf_counter() - t0
    return out, json.loads((out / "config.json").read_text()), wall


def _images(args: argparse.Namespace, classes: list[str]) -> dict[str, list]:
    """The evaluation sets: name -> LabelledImage items (real-dev keeps its sources)."""
    from fungalzsl.images import list_split
    from fungalzsl.labelled import LabelledImage, read_labelled

    test = list_split(args.data, "test", classes)
    sets = {
        "synthetic test": [LabelledImage(p, classes[y], "synthetic") for p, y in zip(test.paths, test.labels)]
    }
    if args.real is not None:
        sets["real-dev"] = read_labelled(args.real, classes)
    return sets


def _score(clf, embedded: dict) -> dict:
    from fungalzsl.fewshot.protocol import scores

    out = {}
    for name, emb in embedded.items():
        with torch.no_grad():
            pred = clf.scores(emb.emb).argmax(-1).numpy()
        out[name] = scores(emb.labels.numpy(), pred, np.asarray(emb.sources))
    return out


def _embed_all(model, sets: dict, classes: list[str]) -> dict:
    from fungalzsl.fewshot.adapt import embed_labelled

    return {name: embed_labelled(model, items, classes, name) for name, items in sets.items()}


def _fine_tuned(name: str, path: Path, sets: dict) -> dict:
    from fungalzsl.eval.table import seconds_per_iteration
    from fungalzsl.io import read_jsonl
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.rundir import resolve_run_dir

    run = resolve_run_dir(path)
    clf = Classifier.load(run)
    cfg = clf.config
    t0 = time.perf_counter()
    embedded = _embed_all(clf.model, sets, clf.classes)
    history = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    return {"name": name, "run": str(run), "kind": "fine-tuned", "scores": _score(clf, embedded),
            "trainable_params": cfg.get("trainable_params"), "peak_rss_mb": cfg.get("peak_rss_mb"),
            "s_per_it": seconds_per_iteration(history), "time_s": cfg.get("train_wall_s"),
            "epochs": cfg.get("epochs_run"), "embed_s": round(time.perf_counter() - t0, 1)}  # fmt: skip


def _cell(v, spec: str = "") -> str:
    return "—" if v is None else format(v, spec)


def score_table(rows: list[dict]) -> str:
    sets = list(rows[0]["scores"])
    sources = sorted({s for r in rows for s in r["scores"].get("real-dev", {}).get("per_source", {})})
    head = ["method", "trainable params", "s/it", "time (s)", "peak RSS (MB)"]
    head += [f"{s} R@1 / bal. acc." for s in sets] + [f"real-dev {s} bal. acc." for s in sources]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], _cell(r["trainable_params"], ","), _cell(r["s_per_it"], ".2f"),
                 _cell(r["time_s"], ".0f"), _cell(r["peak_rss_mb"], ".0f")]  # fmt: skip
        cells += [
            f"{r['scores'][s]['accuracy']:.3f} / {r['scores'][s]['balanced_accuracy']:.3f}" for s in sets
        ]
        per = r["scores"].get("real-dev", {}).get("per_source", {})
        cells += [
            f"{per[s]['balanced_accuracy']:.3f} (n={per[s]['n']})" if s in per else "—" for s in sources
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, required=True, help="a generated dataset (train/ for support, test/)"
    )
    ap.add_argument(
        "--real", type=Path, default=Path("data/real-dev"), help="labelled real images ('' to skip)"
    )
    ap.add_argument("--model", default="lite")
    ap.add_argument("--support", type=int, default=64, help="support images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--run", action="append", default=[], help="NAME=RUN_DIR of a fine-tuned run (repeatable)"
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/fungalzsl-baselines"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.real = args.real if args.real and str(args.real) else None

    from fungalzsl.fewshot.adapter import load_adapter
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    built = [(m, *_build(args, m)) for m in METHODS]
    digests = {cfg["weights_sha256"] for _m, _o, cfg, _w in built}
    assert len(digests) == 1, "the baselines must share one frozen model"
    base = Classifier.load(built[0][1])  # zeroshot: the frozen model and the text classifier
    sets = _images(args, base.classes)
    t0 = time.perf_counter()
    embedded = _embed_all(base.model, sets, base.classes)
    embed_s = round(time.perf_counter() - t0, 1)
    rows = []
    for method, out, cfg, wall in built:
        clf = Classifier(
            base.model, base.classes, base.class_embeddings, base.logit_scale, out, cfg, load_adapter(out)
        )
        rows.append({"name": f"{args.model} {method} (no fine-tuning)", "run": str(out), "kind": "baseline",
                     "method": method, "scores": _score(clf, embedded), "trainable_params": cfg["trainable_params"],
                     "peak_rss_mb": cfg["peak_rss_mb"], "s_per_it": None, "time_s": round(wall, 1),
                     "build_s": cfg["build_s"], "support_per_class": cfg["baseline"]["support_per_class"],
                     "adapter_params": (cfg.get("adapter") or {}).get("params")})  # fmt: skip
    for spec in args.run:
        name, _, path = spec.partition("=")
        rows.append(_fine_tuned(name, Path(path or name), sets))
    results = {"model": args.model, "data": str(args.data), "real": str(args.real), "support": args.support,
               "seed": args.seed, "embed_s": embed_s, "n": {k: len(v) for k, v in sets.items()},
               "rows": rows, "machine": f"{os.cpu_count()} CPUs, shared"}  # fmt: skip
    table = score_table(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(
        f"`{' '.join(['python', *sys.argv])}`\n\nimages: {results['n']}\n\n{table}\n"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
