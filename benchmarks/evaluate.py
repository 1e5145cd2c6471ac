"""``evaluate`` against ``predict`` on the same images of the same run, side by side in one process.

    python benchmarks/evaluate.py --run runs/default/run --data runs/default/data --split test
    python benchmarks/evaluate.py --make 6000 --size 224       # builds a run first (slow on a CPU)

Evaluate does more than predict by design — the start model's images too (baseline), the control
classifiers, retrieval, the bootstrap — so the target is a ratio, evaluate ≤ 3× predict. Evaluate runs
twice, with the text cache (fungalzsl.eval.textcache) and without it, so the cache's gain is measured
in the same run as well. Prints a table and writes benchmarks/results/evaluate.json."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "evaluate.json"


def make_run(root: Path, num_images: int, size: int, descriptions_per_class: int) -> tuple[Path, Path]:
    """A dataset of ``num_images`` (80/10/10 splits), a bank description set and a one-epoch lite run."""
    from fungalzsl.synth.generate import generate_dataset
    from fungalzsl.text.generate import generate_descriptions
    from fungalzsl.train.loop import train_run

    data, desc = root / "data", root / "bank.jsonl"
    generate_dataset(data, num_images=num_images, size=size, seed=0)
    generate_descriptions("bank", per_class=descriptions_per_class, out=desc, seed=0)
    cfg = {"epochs": 1, "batch_size": 64, "unfreeze_max": {"image": 1, "text": 0}, "image_size": size,
           "device": "cpu"}  # fmt: skip
    train_run(data, desc, root / "run", "lite", cfg)
    return root / "run", data


def time_evaluate(run: Path, data: Path, split: str, out: Path, cache: bool) -> float:
    from fungalzsl.eval import evaluate_run

    t0 = time.perf_counter()
    evaluate_run(run, data, out, split=split, cache_texts=cache, record=False)
    return time.perf_counter() - t0


def time_predict(run: Path, images: Path) -> tuple[float, int]:
    from fungalzsl.predict.classifier import Classifier

    t0 = time.perf_counter()
    results = Classifier.load(run).predict([str(images)])
    return time.perf_counter() - t0, len(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--make", type=int, default=0, help="build a run on this many generated images first")
    ap.add_argument("--size", type=int, default=224, help="image size of --make")
    ap.add_argument("--descriptions-per-class", type=int, default=200, help="bank descriptions of --make")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run, data = (args.run, args.data) if args.run else make_run(root, args.make, args.size,
                                                                     args.descriptions_per_class)  # fmt: skip
        images = data / args.split
        predict_s, n = time_predict(run, images)  # first: it also pays the page cache for the images
        predict_s, n = time_predict(run, images)
        print(f"predict: {predict_s:.1f} s for {n} images", flush=True)
        cached_s = time_evaluate(run, data, args.split, root / "eval-cached", cache=True)
        print(f"evaluate: {cached_s:.1f} s", flush=True)
        uncached_s = time_evaluate(run, data, args.split, root / "eval-uncached", cache=False)
    result = {
        "images": n, "split": args.split, "predict_s": round(predict_s, 2),
        "evaluate_s": round(cached_s, 2), "evaluate_without_text_cache_s": round(uncached_s, 2),
        "evaluate_over_predict": round(cached_s / predict_s, 2),
        "without_cache_over_predict": round(uncached_s / predict_s, 2), "target": "evaluate_over_predict <= 3",
        "made": {"num_images": args.make, "size": args.size} if args.make else None,
    }  # fmt: skip
    print(f"{n} images ({args.split})")
    print(f"{'step':<30}{'seconds':>10}{'x predict':>12}")
    for name, s in (("predict", predict_s), ("evaluate", cached_s), ("evaluate, no text cache", uncached_s)):
        print(f"{name:<30}{s:>10.1f}{s / predict_s:>12.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
