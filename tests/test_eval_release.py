"""The authors' released captions as an evaluation description set: the prompt echo (a label leak) is
stripped by the importer before evaluation uses the set."""

from __future__ import annotations

import json

import pytest

from fungalzsl.text.importer import import_descriptions
from fungalzsl.text.records import load_description_set
from keyword_model import KeywordModel

STAGES = ("spore", "hyphae", "mycelium")


@pytest.fixture
def release_subset(release_dir, tmp_path):
    """40 released captions per class, in the release's own JSON format."""
    captions = json.loads((release_dir / "generated_captions.json").read_text())
    picked = []
    for c in STAGES:
        picked += [r for r in captions if r["class_label"] == c][:40]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(picked))
    return path, picked


def test_release_captions_are_used_without_their_prompt_echo(release_subset, tmp_path):
    src, raw = release_subset
    # every released caption opens with its class's prompt: the leak we must not evaluate with
    openings = {c: raw[i * 40]["description"].split(".")[0] for i, c in enumerate(STAGES)}
    assert all(r["description"].startswith(openings[r["class_label"]]) for r in raw)
    out = tmp_path / "release.jsonl"
    import_descriptions(src, out, set_name="release")
    ds = load_description_set(out)
    assert set(ds.by_class) == set(STAGES)
    for c, texts in ds.by_class.items():
        assert texts and not any(t.startswith(openings[c]) for t in texts), c

    # Evaluation embeds exactly the stripped texts: none of the texts the model sees is a prompt echo.
    from fungalzsl.eval import evaluate_run
    from keyword_model import make_colour_dataset

    data = make_colour_dataset(tmp_path / "d", n=2)
    for c in ("red", "green", "blue"):  # give the toy data the release's class names
        (data / "test" / c).rename(data / "test" / {"red": "mycelium", "green": "hyphae", "blue": "spore"}[c])
    (data / "dataset.json").write_text(json.dumps({"classes": list(STAGES)}))
    model = KeywordModel()
    m = evaluate_run(model, data, tmp_path / "e", descriptions=[out], n_boot=10, figures=False)
    assert m["descriptions"]["hash"] == ds.hash and m["descriptions"]["count"] == sum(
        map(len, ds.by_class.values())
    )
    assert model.texts_seen and not any(t.startswith(tuple(openings.values())) for t in model.texts_seen)
