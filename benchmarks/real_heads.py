"""Head-only recipe variants of cpu-default on one run's own training images, scored on its synthetic
test split and on data/real-dev, each trained the way ``fungalzsl train`` trains.

cpu-default keeps both pretrained towers frozen and trains the projection heads and temperature only,
so a variant that leaves the images and their augmentation alone (epochs, lr, embed_dim, loss, ...)
sees the very same frozen-tower features. This script memoises those features on disk (``--memo``,
keyed by the image paths, views, augmentation and split), so after the first variant each costs the
heads' training only. The first variant (``shipped``: no change) must reproduce the run's own numbers.

    PYTHONPATH=src python benchmarks/real_heads.py --data /tmp/lead/final/data \\
        --descriptions /tmp/lead/final/descriptions/bank.jsonl --variants '{"shipped": {}, "ep10": {"epochs": 10}}'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def memoise_feature_cache(memo: Path) -> None:
    """Make train.inputs.FeatureCache keep its frozen-tower pass in ``memo`` (benchmark use only)."""
    from fungalzsl.train import inputs

    original = inputs.FeatureCache._from_disk
    memo.mkdir(parents=True, exist_ok=True)

    def from_disk(self: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = [[str(p) for p in self.paths], self.views, n, repr(getattr(self.augment, "cfg", None)),
               repr(getattr(self.augment, "seed", None))]  # fmt: skip
        f = memo / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}.pt"
        if f.is_file():
            d = torch.load(f)
            return d["feats"], d["valid"]
        feats, valid = original(self, n)
        torch.save({"feats": feats, "valid": valid}, f)
        return feats, valid

    inputs.FeatureCache._from_disk = from_disk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a fungalzsl run's data/ (train/ val/ test/)")
    ap.add_argument("--descriptions", type=Path, required=True)
    ap.add_argument("--variants", required=True, help='JSON: {"name": {train changes}, ...}')
    ap.add_argument("--real", type=Path, default=REPO / "data" / "real-dev")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fungalzsl-real-heads"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "real_heads.jsonl")
    args = ap.parse_args()
    from fungalzsl.config import load_section
    from fungalzsl.eval.imagecache import ImageStore, cached_image
    from fungalzsl.eval.sources import load_source
    from fungalzsl.runtime import configure_torch_threads
    from fungalzsl.train.loop import train_run

    sys.path.insert(0, str(Path(__file__).parent))
    from real_recipe import Scorer

    configure_torch_threads()
    memoise_feature_cache(args.work / "memo")
    store = ImageStore()  # the frozen backbone's outputs on the scored images, shared by every variant
    scorer = Scorer(args.data, args.real, args.descriptions, 0, 0)
    for name, change in json.loads(args.variants).items():
        cfg = {**load_section("cpu-default", "train"), **change, "progress": False}
        run = args.work / "runs" / name
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        train_run(args.data, args.descriptions, run, config=cfg)
        wall = time.perf_counter() - t0
        res = scorer(cached_image(load_source(run).model, store))
        row = {"name": name, "change": change, "wall_s": round(wall, 1), "load": os.getloadavg()[0], **res}
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        q = res["real"]
        pc = q["per_class_recall"]
        print(f"{name}: synthetic R@1 {res['synthetic']['recall@1']:.3f}  real balanced "
              f"{q['balanced_accuracy']:.3f}  " + " ".join(f"{c} {v:.2f}" for c, v in pc.items()) + "  "
              + " ".join(f"{k} {v['accuracy']:.2f}" for k, v in q["per_source"].items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
