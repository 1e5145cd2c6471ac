"""Table 1 over every backend family: tiny CLIP, SigLIP, ALIGN and BLIP models (built by the hf tests'
builders) and ``lite`` each train one epoch on a generated dataset, are evaluated on its test split, and
``build_table`` / ``table_markdown`` report one row per run (issue #7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fungalzsl.eval import evaluate_run
from fungalzsl.eval.table import build_table, table_markdown
from fungalzsl.synth import generate_dataset
from fungalzsl.text.generate import generate_descriptions
from fungalzsl.train.loop import train_run
from test_models_backends import tiny_hf_clip_dir
from test_models_hf_families import tiny_dir


@pytest.mark.slow
def test_table_over_every_backend_family(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, num_images=30, size=32, seed=0, progress=False)
    desc = tmp_path / "desc.jsonl"
    generate_descriptions("bank", per_class=10, out=desc)

    specs = {
        "clip": f"hf:{tiny_hf_clip_dir(tmp_path)}",
        "siglip": f"hf:{tiny_dir(tmp_path, 'siglip')}",
        "align": f"hf:{tiny_dir(tmp_path, 'align')}",
        "blip": f"hf:{tiny_dir(tmp_path, 'blip')}",
        "lite": "lite",
    }
    runs, recalls = [], {}
    for name, spec in specs.items():
        cfg = {
            "epochs": 1,
            "batch_size": 8,
            "unfreeze_every": 1,
            "lr": 1e-3,
            "warmup_steps": 0,
            "progress": False,
        }
        if name == "siglip":
            cfg["loss"] = "sigmoid"
        if name == "lite":
            cfg |= {"image_size": 32, "embed_dim": 32}
        run = tmp_path / f"run-{name}"
        assert train_run(data, desc, run, spec, cfg)["status"] == "done"
        evaluate_run(
            run, data, tmp_path / f"eval-{name}", split="test", baseline=False, n_boot=50, figures=False
        )
        recalls[name] = json.loads((tmp_path / f"eval-{name}" / "metrics.json").read_text())["recall@1"]
        runs.append(run)

    rows = build_table(runs, split="test")
    assert len(rows) == len(specs)
    for (name, spec), run, row in zip(specs.items(), runs, rows, strict=True):
        assert row["run"] == str(run)
        assert row["model"] == spec and Path(spec).name == {"clip": "tiny-hf-clip", "lite": "lite"}.get(
            name, f"tiny-{name}"
        )
        assert 0.0 <= row["recall@1"] <= 1.0
        assert row["recall@1"] == recalls[name]
        assert row["objective"] == ("sigmoid" if name == "siglip" else "multi_positive")
        assert row["split"] == "test" and row["n"] > 0

    md = table_markdown(rows).splitlines()
    assert len(md) == 2 + len(specs)
    for (name, spec), line in zip(specs.items(), md[2:], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == spec
        assert cells[-1] == ("sigmoid" if name == "siglip" else "multi_positive")
        assert cells[3].startswith(f"{recalls[name]:.3f}")
