"""``bioclip`` / ``bioclip-2``: aliases of their open_clip hub ids, tested with a tiny ViT of the same
family placed in a local Hugging Face cache exactly where open_clip looks for the real repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fungalzsl.errors import FungalError
from fungalzsl.models import build_model, load_run
from fungalzsl.models.specs import OPENAI_MEAN, OPENAI_STD, expand_alias
from fungalzsl.train.loop import train_run
from test_models_backends import TINY_OPENCLIP
from tiny_data import make_dataset, make_descriptions

SNAPSHOT = "0" * 40


def fake_hub(cache: Path, repo: str) -> Path:
    """cache/models--ORG--NAME/{refs/main, snapshots/HASH/...}: the layout huggingface_hub reads offline."""
    import open_clip
    from safetensors.torch import save_file

    from fungalzsl.models.openclip import _register_config

    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(SNAPSHOT)
    # a config that says 0.5 normalisation: the alias keeps the model card's OpenAI values
    config = {"model_cfg": TINY_OPENCLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (snap / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(_register_config(TINY_OPENCLIP))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "open_clip_model.safetensors")
    )
    return snap


def test_aliases_name_the_hub_repos() -> None:
    assert expand_alias("bioclip")[0] == "openclip:hf-hub:imageomics/bioclip"
    assert expand_alias("bioclip-2")[0] == "openclip:hf-hub:imageomics/bioclip-2"
    assert expand_alias("bioclip@/models/bc")[0] == "openclip:local-dir:/models/bc"
    assert expand_alias("bioclip-2")[1].arch == "ViT-L-14" and expand_alias("bioclip")[1].arch == "ViT-B-16"
    assert expand_alias("openclip:RN50@openai") == ("openclip:RN50@openai", None)


def test_bioclip_from_the_hub_cache_trains_and_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    fake_hub(tmp_path / "hub", "imageomics/bioclip")
    model = build_model("bioclip")
    assert model.spec == "bioclip" and model.text_template == "a photo of {class}."
    norm = model.preprocess.transforms[-1]
    assert tuple(norm.mean) == OPENAI_MEAN and tuple(norm.std) == OPENAI_STD
    groups = model.layer_groups()
    assert len(groups["image"]) == 4 and len(groups["text"]) == 4  # stem, 2 blocks, top: the ViT layout

    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_every": 1, "progress": False}
    train_run(data, desc, tmp_path / "run", "bioclip", cfg)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))  # reload needs only the run
    reloaded, config = load_run(tmp_path / "run")
    assert config["model"] == "bioclip" and reloaded.text_template == "a photo of {class}."
    x = torch.rand(2, 3, 32, 32)
    model.load_state_dict(reloaded.state_dict())
    torch.testing.assert_close(reloaded.encode_image(x), model.eval().encode_image(x))

    # evaluate's template classifier uses BioCLIP's own template unless --template says otherwise
    import fungalzsl.eval.classifier as clf
    from fungalzsl.eval.evaluate import evaluate_run

    seen: list[str] = []
    embed = clf.embed_texts
    monkeypatch.setattr(
        clf, "embed_texts", lambda m, texts, *a, **k: seen.extend(texts) or embed(m, texts, *a, **k)
    )
    kw = {"split": "val", "classifier": "template", "baseline": False, "figures": False, "record": False}
    evaluate_run(tmp_path / "run", data, tmp_path / "eval", **kw)
    assert "a photo of spore." in seen and "a photo of a spore." not in seen
    evaluate_run(tmp_path / "run", data, tmp_path / "eval2", template="an image of {class}.", **kw)
    assert "an image of spore." in seen


def test_bioclip_from_a_local_directory(tmp_path: Path) -> None:
    snap = fake_hub(tmp_path / "hub", "imageomics/bioclip-2")
    model = build_model(f"bioclip-2@{snap}")
    assert model.spec == f"bioclip-2@{snap}" and model.image_size == 32
    assert model.encode_text(["a photo of spore."]).shape == (1, 16)


def test_bioclip_offline_names_the_files_to_provide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(FungalError, match=r"open_clip_config\.json and open_clip_pytorch_model\.bin") as e:
        build_model("bioclip-2")
    assert "https://huggingface.co/imageomics/bioclip-2" in str(e.value) and "bioclip-2@DIR" in str(e.value)
    assert "\n" not in str(e.value)


def test_bioclip_gets_open_clip_lora_targets(tmp_path: Path) -> None:
    from fungalzsl.models.lora import add_lora

    model = build_model(f"bioclip@{fake_hub(tmp_path / 'hub', 'imageomics/bioclip')}")
    targets = add_lora(model, 2, 4.0, 0.0, {})["targets"]
    assert targets["image"] and all(n.endswith(("mlp.c_fc", "mlp.c_proj")) for n in targets["image"])
