"""Full fine-tuning vs LoRA for ``lite`` on this machine, side by side in one run: trainable parameters,
s/it, peak RSS, train wall time, and Recall@1 on the synthetic test split and on the real-image
development set (data/real-dev, 28 real photos; spore and mycelium have 2 and 5, so it is a smoke test).

    python benchmarks/lora.py                         # 300 images at 224 px, 3 epochs, 5 arms
    python benchmarks/lora.py --num-images 600 --epochs 5

Every arm is the same ``fungalzsl train`` command (cpu-default preset, same data, descriptions and seed)
in its own process, so each peak RSS is that run's alone (``config.json["peak_rss_mb"]``, recorded by the
trainer). Prints a table and writes benchmarks/results/lora.json and lora.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
REAL_DEV = ROOT / "data" / "real-dev"

# Arms 2 and 3 adapt the same layers (image tower only: cpu-default keeps the text tower frozen, and
# with --lora-unfreeze its unfreeze_max text: 0 caps the text adapters at none) and differ only in the
# schedule: that pair is the "replace or combine progressive unfreezing" measurement.
ARMS = {
    "full (cpu-default: heads + top 2 image groups)": [],
    "LoRA r8, both towers (default targets)": ["--adapter", "lora"],
    "LoRA r8, image tower, + unfreezing schedule": ["--adapter", "lora", "--lora-unfreeze"],
    "LoRA r8, image tower, all from epoch 0": ["--adapter", "lora", "--lora-targets", "text=none"],
    "LoRA r8, image tower, adapter lr 1e-3": [
        "--adapter",
        "lora",
        "--lora-targets",
        "text=none",
        "--backbone-lr",
        "1e-3",
    ],
}


def fungalzsl(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "fungalzsl", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def real_dev_folder(out: Path) -> Path:
    """data/real-dev as an ImageFolder test split (symlinks), the layout ``evaluate`` reads."""
    for line in (REAL_DEV / "labels.jsonl").read_text().splitlines():
        rec = json.loads(line)
        d = out / "test" / rec["label"]
        d.mkdir(parents=True, exist_ok=True)
        (d / rec["file"]).symlink_to(REAL_DEV / rec["file"])
    return out


def run_arm(work: Path, name: str, extra: list[str], epochs: int, data: Path, real: Path) -> dict:
    from fungalzsl.eval.table import seconds_per_iteration
    from fungalzsl.io import read_jsonl

    run = work / "runs" / str(list(ARMS).index(name))
    desc = work / "bank.jsonl"
    fungalzsl("train", "--data", str(data), "--descriptions", str(desc), "--out", str(run), "--epochs", str(epochs),
              "--quiet", *extra)  # fmt: skip
    fungalzsl("evaluate", str(run), "--data", str(data), "--out", str(work / "eval" / run.name))
    fungalzsl(
        "evaluate",
        str(run),
        "--data",
        str(real),
        "--out",
        str(work / "eval-real" / run.name),
        "--no-baseline",
    )
    config = json.loads((run / "config.json").read_text())
    test = json.loads((work / "eval" / run.name / "metrics.json").read_text())
    real_m = json.loads((work / "eval-real" / run.name / "metrics.json").read_text())
    return {
        "arm": name,
        "args": extra,
        "trainable_params": config["trainable_params"],
        "total_params": config["total_params"],
        "s_per_it": seconds_per_iteration(read_jsonl(run / "metrics.jsonl")),
        "peak_rss_mb": config["peak_rss_mb"],
        "train_wall_s": config["train_wall_s"],
        "test_recall@1": test["recall@1"],
        "test_ci95": test.get("ci95", {}).get("recall@1"),
        "zero_shot_start": (test.get("baseline") or {}).get("recall@1"),
        "real_dev_recall@1": real_m["recall@1"],
        "real_dev_n": real_m["n"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| arm | trainable params | s/it | peak RSS | train wall | test Recall@1 [95% CI] | real-dev Recall@1 (n) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ci = r["test_ci95"]
        rec = f"{r['test_recall@1']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        lines.append(
            f"| {r['arm']} | {r['trainable_params'] / 1e3:.1f} K | {r['s_per_it']:.2f} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['train_wall_s']:.0f} s | {rec} | {r['real_dev_recall@1']:.3f} ({r['real_dev_n']}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--arms", nargs="*", type=int, help="indices into the arm list (default: all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fungalzsl-lora-") as tmp:
        work = Path(tmp)
        data = work / "data"
        fungalzsl("generate", "--out", str(data), "--num-images", str(args.num_images), "--size", "224")
        fungalzsl(
            "describe",
            "--backend",
            "bank",
            "--per-class",
            str(args.per_class),
            "--out",
            str(work / "bank.jsonl"),
        )
        real = real_dev_folder(work / "real")
        chosen = [n for i, n in enumerate(ARMS) if args.arms is None or i in args.arms]
        rows = []
        for name in chosen:
            rows.append(run_arm(work, name, ARMS[name], args.epochs, data, real))
            print(f"done: {name}", file=sys.stderr)
    table = markdown(rows)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs)",
            "num_images": args.num_images, "epochs": args.epochs, "per_class": args.per_class,
            "command": "python benchmarks/lora.py " + " ".join(sys.argv[1:])}  # fmt: skip
    (RESULTS / "lora.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "lora.md").write_text(f"`{meta['command'].strip()}` on {meta['machine']}\n\n{table}")


if __name__ == "__main__":
    main()
