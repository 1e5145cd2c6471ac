"""Table 1 over every backend family: tiny randomly initialised transformers CLIP, SigLIP, ALIGN and BLIP
models (built with the test suite's builders, tests/test_models_*.py) and ``lite`` each fine-tune on a
generated dataset with bank descriptions, are evaluated on its test split, and ``fungalzsl.eval.table``
reports one row per run. The models are tiny and untrained, so the numbers test the plumbing, not the
architectures.

    python benchmarks/table_families.py                     # 150 images at 64 px, 2 epochs
    python benchmarks/table_families.py --images 60 --epochs 1

Prints the Markdown table and writes benchmarks/results/table_families.md and .json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders live with the tests


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from fungalzsl.eval import evaluate_run
    from fungalzsl.eval.table import build_table, table_markdown
    from fungalzsl.synth import generate_dataset
    from fungalzsl.text.generate import generate_descriptions
    from fungalzsl.train.loop import train_run
    from test_models_backends import tiny_hf_clip_dir
    from test_models_hf_families import tiny_dir

    with tempfile.TemporaryDirectory(prefix="table-families-") as tmp:
        work = Path(tmp)
        data = work / "data"
        generate_dataset(data, num_images=args.images, size=args.size, seed=args.seed, progress=False)
        desc = work / "desc.jsonl"
        generate_descriptions("bank", per_class=args.per_class, out=desc)
        specs = {
            "clip": f"hf:{tiny_hf_clip_dir(work)}",
            "siglip": f"hf:{tiny_dir(work, 'siglip')}",
            "align": f"hf:{tiny_dir(work, 'align')}",
            "blip": f"hf:{tiny_dir(work, 'blip')}",
            "lite": "lite",
        }
        runs, seconds = [], {}
        for name, spec in specs.items():
            cfg = {"epochs": args.epochs, "batch_size": args.batch_size, "unfreeze_every": 1, "lr": 1e-3,
                   "warmup_steps": 0, "seed": args.seed, "progress": False}  # fmt: skip
            if name == "siglip":
                cfg["loss"] = "sigmoid"
            if name == "lite":
                cfg |= {"image_size": args.size, "embed_dim": 32}
            run = work / f"run-{name}"
            t0 = time.perf_counter()
            train_run(data, desc, run, spec, cfg)
            evaluate_run(
                run, data, work / f"eval-{name}", split="test", baseline=False, n_boot=200, figures=False
            )
            seconds[name] = round(time.perf_counter() - t0, 2)
            runs.append(run)
        rows = build_table(runs, split="test")
        # temp paths mean nothing after the run: name each row by its family
        for name, row in zip(specs, rows, strict=True):
            row["model"] = "lite" if name == "lite" else f"hf:tiny-{name}"
            row["run"] = row["metrics"] = None
            row["train_eval_seconds"] = seconds[name]

    md = table_markdown(rows)
    print(md, end="")
    command = "python benchmarks/table_families.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table_families.md").write_text(f"`{command}`\n\n{md}")
    meta = {"command": command, "args": vars(args), "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip
    (RESULTS / "table_families.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
