"""``fungalzsl novel``: new stages generated in the run's style, classified among trained + new classes
from descriptions only; exact counts on a constructed case, one-line errors, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fungalzsl.errors import FungalError
from fungalzsl.synth import generate_dataset

NOVEL = ["germinating-spore", "sporulating-mycelium", "budding-yeast"]
TRAINED = ["spore", "hyphae", "mycelium"]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A run folder naming its classes, description set and data (a tiny paper dataset, seed 0)."""
    root = tmp_path_factory.mktemp("novel")
    data = root / "data"
    generate_dataset(data, "paper", num_images=6, size=32, seed=0, progress=False)
    desc = root / "train.jsonl"
    desc.write_text(
        "".join(
            json.dumps({"class": c, "text": f"{w} {c}"}) + "\n"
            for c, w in zip(TRAINED, ["beta", "gamma", "delta"])
        )
    )
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"classes": TRAINED, "descriptions": {"path": str(desc)}, "data": str(data)})
    )
    return run


def _model():
    from keyword_model import KeywordModel

    # Images embed as their mean RGB (near white here): only 'alpha' points that way, so every image
    # is classified as the class described by 'alpha'.
    return KeywordModel({"alpha": (1, 1, 1), "beta": (1, -1, 0), "gamma": (0, 1, -1), "delta": (-1, -1, -1)})


def test_exact_confusion_on_a_constructed_case(fake_run, tmp_path):
    from fungalzsl.pipeline.novel import novel_stages

    sets = tmp_path / "mine.jsonl"
    words = {"germinating-spore": "alpha", "sporulating-mycelium": "delta", "budding-yeast": "beta"}
    sets.write_text("".join(json.dumps({"class": c, "text": f"{w} cells"}) + "\n" for c, w in words.items()))
    out = tmp_path / "out"
    res = novel_stages(
        fake_run, out, NOVEL, n=4, descriptions=[str(sets)], n_boot=20, progress=False, model=_model()
    )
    (row,) = res["rows"]
    assert res["classes"] == TRAINED + NOVEL
    g = res["classes"].index("germinating-spore")
    assert row["confusion_matrix"] == [[4 if j == g else 0 for j in range(6)] for _ in range(6)]
    assert row["per_class"]["germinating-spore"]["recall"] == 1.0
    assert row["per_class"]["budding-yeast"]["recall"] == 0.0 and row["trained_recall@1"] == 0.0
    assert row["per_class"]["spore"]["support"] == 4
    assert {"novel.json", "novel.md", "novel.csv", "report.html"} <= {p.name for p in out.iterdir()}
    assert (
        json.loads((out / "novel.json").read_text())["rows"][0]["confusion_matrix"] == row["confusion_matrix"]
    )
    assert "germinating-spore recall" in (out / "novel.md").read_text()
    # the test images: every class, in the run's preset (32 px), all in test
    ds = json.loads((out / "data" / "dataset.json").read_text())
    assert ds["classes"] == TRAINED + NOVEL and ds["size"] == 32 and set(ds["splits"]) == {"test"}


def test_shipped_sets_describe_every_new_stage(fake_run, tmp_path):
    from fungalzsl.pipeline.novel import _sets

    sets = _sets(
        ["bank", "notes"],
        Path(json.loads((fake_run / "config.json").read_text())["descriptions"]["path"]),
        TRAINED,
        NOVEL,
        tmp_path,
    )
    for _, path in sets:
        classes = {json.loads(x)["class"] for x in path.read_text().splitlines()}
        assert classes == set(TRAINED + NOVEL)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("germinating-spore,nosuch", "unknown stage(s): nosuch"),
        ("spore", "already trained"),
        (",", "--classes is empty"),
    ],
)
def test_bad_classes_are_one_line_errors(fake_run, tmp_path, classes, message):
    from fungalzsl.cli import app

    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["novel", str(fake_run), "--classes", classes, "--out", str(out), "--n", "2"])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_the_training_seed_is_refused(fake_run, tmp_path):
    from fungalzsl.pipeline.novel import novel_stages

    with pytest.raises(FungalError, match="training data's seed"):
        novel_stages(fake_run, tmp_path / "o", NOVEL, seed=0)


def test_blend_weight_zero_is_the_mean_classification_and_a_bad_weight_is_refused(fake_run, tmp_path):
    from fungalzsl.cli import app
    from fungalzsl.pipeline.novel import novel_stages

    sets = tmp_path / "mine.jsonl"
    words = {"germinating-spore": "alpha", "sporulating-mycelium": "delta", "budding-yeast": "beta"}
    sets.write_text("".join(json.dumps({"class": c, "text": f"{w} cells"}) + "\n" for c, w in words.items()))
    kw = dict(n=2, descriptions=[str(sets)], n_boot=20, progress=False, model=_model())
    mean = novel_stages(fake_run, tmp_path / "m", NOVEL, **kw)
    blend = novel_stages(fake_run, tmp_path / "b", NOVEL, classifier="blend", blend_weight=0.0, **kw)
    assert blend["rows"][0]["confusion_matrix"] == mean["rows"][0]["confusion_matrix"]
    assert blend["blend_weight"] == 0.0 and mean["blend_weight"] is None
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["novel", str(fake_run), "--out", str(out), "--n", "2", "--classifier", "blend",
                                 "--blend-weight", "-1"])  # fmt: skip
    assert r.exit_code != 0 and "--blend-weight -1.0: must be in [0, 1]" in r.output
    assert "Traceback" not in r.output and not out.exists()
