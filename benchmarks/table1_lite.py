"""Issue 14's Table 1 for ``lite`` on this machine, in one run on one generated paper-style dataset:
the fine-tuned arms (cpu-default, LoRA, CatLIP, the paper's contrastive settings) and the baselines that
need no fine-tuning (zeroshot, prototype, probe, tip), each scored on the synthetic test split and on
data/real-dev (per source too), then ``fungalzsl table`` over all of them with a real-dev column.

    python benchmarks/table1_lite.py                        # 375 images (300 train) at 224 px, 3 epochs
    python benchmarks/table1_lite.py --resume               # continue: skips arms already done
    python benchmarks/table1_lite.py --rescore              # the same runs scored again (real-dev changed)

Every arm is one process (``fungalzsl train`` or ``fungalzsl baseline``, same data, bank descriptions
and seed), so each peak RSS is that arm's own (``config.json["peak_rss_mb"]``); trainable parameters
and s/it come from the run as ``fungalzsl table`` reads them; "time" is the whole command's wall time
(model build, feature caching, training or fitting; a run's ``train_wall_s`` is in the JSON). Every
classifier is then scored by ``fungalzsl evaluate`` on both sets (the synthetic one with the zero-shot
start). The load average before and after each arm is recorded: the machine is shared. Prints both tables and writes
benchmarks/results/table1_lite.json and table1_lite.md; the runs stay in --workdir."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from baselines import METHODS, score_table
from lora import ARMS, ROOT, fungalzsl

RESULTS = Path(__file__).parent / "results" / "table1_lite.json"
REAL_DEV = ROOT / "data" / "real-dev"
MARK = ".table1_lite"  # a workdir this script made, so it may clear it
BEST_LORA = "LoRA r8, image tower, adapter lr 1e-3"  # best real-dev Recall@1 of benchmarks/lora.py
PAPER = ["--config", "paper", "--model", "lite", "--batch-size", "64", "--workers", "0"]
TRAINED = {  # arm -> extra ``fungalzsl train`` arguments (all: --epochs E, cpu-default unless --config)
    "full: cpu-default, no adapter (heads train, towers frozen)": [],
    "paper recipe (paper.yaml train settings, batch 64)": PAPER,
    "CatLIP (cpu-default, objective catlip)": ["--objective", "catlip"],
    f"{BEST_LORA} (cpu-default)": ARMS[BEST_LORA],
}


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's metrics.json in benchmarks/baselines.py's row shape (balanced accuracy per source:
    the mean recall over the classes that source has)."""
    per = {
        src: {"n": s["n"], "balanced_accuracy": sum(c["recall"] for c in s["per_class"].values()) / len(s["per_class"])}
        for src, s in (metrics.get("per_source") or {}).items()
    }  # fmt: skip
    return {"accuracy": metrics["recall@1"], "balanced_accuracy": metrics["balanced_accuracy"], "per_source": per,
            "ci95": (metrics.get("ci95") or {}).get("recall@1"), "n": metrics["n"]}  # fmt: skip


def _evaluate(run: Path, name: str, data: Path, work: Path) -> dict[str, Any]:
    """Score ``run`` with ``fungalzsl evaluate`` on the synthetic test split and on real-dev."""
    out: dict[str, Any] = {}
    for label, d, extra in (("synthetic test", data, []), ("real-dev", REAL_DEV, ["--no-baseline"])):
        ev = work / "eval" / label.replace(" ", "-") / name
        shutil.rmtree(ev, ignore_errors=True)  # a --resume after a kill mid-evaluation
        fungalzsl("evaluate", str(run), "--data", str(d), "--out", str(ev), *extra)
        out[label] = json.loads((ev / "metrics.json").read_text())
    return out


def _arm(work: Path, slug: str, cmd: list[str]) -> tuple[Path, dict[str, Any], float, list[float]]:
    """Run one arm's command (train or baseline) into work/runs/slug; its config, wall time, loads."""
    run = work / "runs" / slug
    shutil.rmtree(run, ignore_errors=True)
    load = [round(os.getloadavg()[0], 2)]
    t0 = time.perf_counter()
    fungalzsl(*cmd, "--out", str(run))
    wall = round(time.perf_counter() - t0, 1)
    load.append(round(os.getloadavg()[0], 2))
    return run, json.loads((run / "config.json").read_text()), wall, load


def _row(
    name: str, kind: str, run: Path, config: dict, wall: float, load: list[float], metrics: dict
) -> dict:
    from fungalzsl.eval.table import seconds_per_iteration
    from fungalzsl.io import read_jsonl

    history = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    return {"name": name, "kind": kind, "run": str(run), "trainable_params": config.get("trainable_params"),
            "total_params": config.get("total_params"), "peak_rss_mb": config.get("peak_rss_mb"),
            "s_per_it": seconds_per_iteration(history), "time_s": wall,
            "train_wall_s": config.get("train_wall_s"), "load_before_after": load, "epochs": config.get("epochs_run"),
            "zero_shot_start": (metrics["synthetic test"].get("baseline") or {}).get("recall@1"),
            "scores": {k: _scores(m) for k, m in metrics.items()}}  # fmt: skip


def _arms(args: argparse.Namespace, data: Path, desc: Path) -> list[tuple[str, str, str, list[str]]]:
    """(name, slug, kind, command) of every arm, in table order."""
    arms = []
    for i, (name, extra) in enumerate(TRAINED.items()):
        slug = ("full", "paper", "catlip", "lora")[i]
        arms.append((name, slug, "fine-tuned", ["train", "--data", str(data), "--descriptions", str(desc),
                                                "--epochs", str(args.epochs), "--quiet", *extra]))  # fmt: skip
    for m in METHODS:
        arms.append((f"{m} (no fine-tuning, {args.support}/class)", m, "baseline",
                     ["baseline", "lite", "--data", str(data), "--method", m, "--descriptions", str(desc),
                      "--support-per-class", str(args.support), "--seed", "0"]))  # fmt: skip
    return arms


def _prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    work = args.workdir
    if work.exists() and not args.resume:
        if any(work.iterdir()) and not (work / MARK).is_file():
            sys.exit(f"error: {work} exists and was not made by this script; pass another --workdir")
        shutil.rmtree(work)
    (work / "rows").mkdir(parents=True, exist_ok=True)
    (work / MARK).touch()
    data, desc = work / "data", work / "bank.jsonl"
    if not (data / "dataset.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        fungalzsl("generate", "--out", str(data), "--num-images", str(args.num_images), "--size", "224")
    if not desc.is_file():
        fungalzsl("describe", "--backend", "bank", "--per-class", str(args.per_class), "--out", str(desc))
    return data, desc


def _table1(runs: list[str], work: Path) -> str:
    """``fungalzsl table`` over every arm, with the real-dev column."""
    cmd = [sys.executable, "-m", "fungalzsl", "table", *runs, "--data", str(REAL_DEV), "--out",
           str(work / "table1.md")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return (work / "table1.md").read_text()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=375, help="generated images (80%% train)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=100, help="bank descriptions per class")
    ap.add_argument("--support", type=int, default=64, help="baseline support images per class")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/fungalzsl-table1"))
    ap.add_argument("--resume", action="store_true", help="keep the workdir; skip arms already done")
    ap.add_argument("--rescore", action="store_true",
                    help="with --resume implied: evaluate the arms already trained again (their training "
                         "columns kept), e.g. after data/real-dev changed")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.resume = args.resume or args.rescore
    data, desc = _prepare(args)
    rows = []
    for name, slug, kind, cmd in _arms(args, data, desc):
        done = args.workdir / "rows" / f"{slug}.json"
        if not done.is_file():
            run, config, wall, load = _arm(args.workdir, slug, cmd)
            metrics = _evaluate(run, slug, data, args.workdir)
            done.write_text(json.dumps(_row(name, kind, run, config, wall, load, metrics), indent=2) + "\n")
            print(f"done: {name} ({wall:.0f} s, load {load[0]} -> {load[1]})", file=sys.stderr)
        elif args.rescore:
            row = json.loads(done.read_text())
            metrics = _evaluate(Path(row["run"]), slug, data, args.workdir)
            row["scores"] = {k: _scores(m) for k, m in metrics.items()}
            done.write_text(json.dumps(row, indent=2) + "\n")
            print(f"rescored: {name}", file=sys.stderr)
        rows.append(json.loads(done.read_text()))
    bench, table1 = score_table(rows), _table1([r["run"] for r in rows], args.workdir)
    print(bench + "\n\n" + table1)
    command = " ".join(["python", "benchmarks/table1_lite.py", *(a for a in sys.argv[1:] if a != "--resume")])
    rescored = " (training columns from the first run; scores from --rescore)" if args.rescore else ""
    n = {k: v["n"] for k, v in rows[0]["scores"].items()}
    meta = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
            "num_images": args.num_images, "epochs": args.epochs, "per_class": args.per_class,
            "support": args.support, "n": n, "workdir": str(args.workdir), "resumed": args.resume,
            "rescored": args.rescore}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**meta, "rows": rows, "table1": table1}, indent=2) + "\n")
    loads = ", ".join(
        f"{r['name'].split(' (')[0]} {r['load_before_after'][0]}->{r['load_before_after'][1]}" for r in rows
    )
    args.out.with_suffix(".md").write_text(
        f"`{command}`{rescored} on {meta['machine']}; images {n}; 1-min load average before->after each arm: {loads}\n\n"
        f"{bench}\n\n`fungalzsl table RUN... --data data/real-dev`:\n\n{table1}"
    )  # fmt: skip
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
