"""Tiny open_clip and transformers CLIP models, built from configs and saved locally, go through the same
public path users take: build_model(spec) → train_run → run directory → load_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fungalzsl.errors import FungalError
from fungalzsl.models import build_model, load_run
from fungalzsl.predict.embed import embed_images
from fungalzsl.train.loop import train_run
from tiny_data import TINY_WORDS, make_dataset, make_descriptions

TINY_OPENCLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def tiny_openclip_dir(tmp: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    from fungalzsl.models.openclip import _register_config

    d = tmp / "tiny-openclip"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPENCLIP}))
    torch.manual_seed(0)
    model = open_clip.create_model(_register_config(TINY_OPENCLIP))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "open_clip_model.safetensors")
    )
    return d


def tiny_hf_clip_dir(tmp: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = TINY_WORDS
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": 3, "bos_token_id": 2,
            "pad_token_id": 0}  # fmt: skip
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2}  # fmt: skip
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    d = tmp / "tiny-hf-clip"
    model.save_pretrained(d)
    fast.save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_tiny_backend_trains_checkpoints_and_reloads(tmp_path: Path, backend: str) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    spec = (
        f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}"
        if backend == "openclip"
        else f"hf:{tiny_hf_clip_dir(tmp_path)}"
    )
    model = build_model(spec)
    groups = model.layer_groups()
    assert len(groups["image"]) == 4 and len(groups["text"]) == 4  # stem, 2 blocks, top
    x = torch.randn(2, 3, 32, 32)
    emb = model.encode_image(x)
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert model.encode_text(["spore stage", "red network"]).shape == (2, 16)

    run = tmp_path / "run"
    # unfreeze one group per tower per epoch: epoch 1 trains the uncached path through both towers
    result = train_run(
        data,
        desc,
        run,
        spec,
        {"epochs": 2, "batch_size": 6, "unfreeze_every": 1, "lr": 1e-3, "progress": False},
    )
    assert result["status"] == "done"
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert epochs[1]["unfrozen"] == {"image": 1, "text": 1}
    assert epochs[1]["cached_split"] == {"image": 0, "text": 0}  # these backends cache whole towers only

    # load_run rebuilds offline from files in the run, even if the source directory is gone
    source = Path(spec.split(":", 2)[-1] if backend == "openclip" else spec[3:])
    source.rename(source.with_name(source.name + "-moved"))
    reloaded, cfg = load_run(run)
    assert cfg["model"] == spec and cfg["classes"] == ["hyphae", "mycelium", "spore"]
    trained = build_model(spec.replace(source.name, source.name + "-moved"))
    from fungalzsl.models import load_weights

    load_weights(trained, run / "model.safetensors")
    trained.eval()
    torch.testing.assert_close(reloaded.encode_image(x), trained.encode_image(x))
    paths = sorted((data / "val").rglob("*.png"))
    feats, _, errors = embed_images(reloaded, paths)
    assert feats.shape == (len(paths), 16) and not errors


def test_reloading_a_checkpoint_into_another_model_is_one_line_error(tmp_path: Path) -> None:
    spec = f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}"
    model = build_model(spec)
    from fungalzsl.models import load_weights, save_weights

    save_weights(model, tmp_path / "w.safetensors")
    other = build_model(f"hf:{tiny_hf_clip_dir(tmp_path)}")
    with pytest.raises(FungalError, match="does not match model") as e:
        load_weights(other, tmp_path / "w.safetensors")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "unknown model spec"),
        ("openclip:NoSuchNet@openai", "unknown open_clip architecture"),
        ("openclip:RN50@no-such-tag", "no pretrained tag"),
        ("openclip:RN50@/nowhere/ckpt.pt", "does not exist"),
        ("hf:/nowhere/clip-dir", "cannot load transformers model"),
    ],
)
def test_bad_model_specs_fail_with_one_line(spec: str, message: str) -> None:
    with pytest.raises(FungalError, match=message) as e:
        build_model(spec)
    assert "\n" not in str(e.value)


def test_openai_weights_not_on_disk_name_the_file_to_provide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        FungalError,
        match=r"open_clip_pytorch_model\.bin from https://huggingface\.co/timm/resnet50_clip\.openai, then pass it as openclip:RN50@",
    ):
        build_model("openclip:RN50@openai")
