"""Tiny ALIGN, BLIP (ITC and blip-itm) and SigLIP models, built from configs with a local WordPiece /
word-level tokenizer and saved to a temp dir, go through the public path: build_model("hf:DIR") →
train_run → load_run → evaluate_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fungalzsl.eval import evaluate_run
from fungalzsl.models import build_model, load_run
from fungalzsl.train.loop import train_run
from tiny_data import TINY_WORDS, make_dataset, make_descriptions

WORDS = TINY_WORDS
BERT_TEXT = {"vocab_size": len(WORDS) + 5, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "max_position_embeddings": 32, "pad_token_id": 0}  # fmt: skip
VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
       "num_attention_heads": 2}  # fmt: skip


def bert_tokenizer(d: Path):  # type: ignore[no-untyped-def]
    """A BERT WordPiece tokenizer from a vocab file written here ([PAD] id 0, as BERT configs expect)."""
    from transformers import BertTokenizerFast

    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)


def siglip_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )


def tiny_dir(tmp: Path, kind: str) -> Path:
    import transformers as tf

    d = tmp / f"tiny-{kind}"
    torch.manual_seed(0)
    proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if kind == "align":
        vision = {"image_size": 32, "width_coefficient": 1.0, "depth_coefficient": 1.0, "kernel_sizes": [3, 3],
                  "in_channels": [32, 16], "out_channels": [16, 32], "strides": [1, 2], "num_block_repeats": [1, 1],
                  "expand_ratios": [1, 2], "hidden_dim": 32, "depthwise_padding": []}  # fmt: skip
        model = tf.AlignModel(tf.AlignConfig(text_config=BERT_TEXT, vision_config=vision, projection_dim=32))
        tok = bert_tokenizer(d)
        # ALIGN's own processor: squash to `size`, crop, normalise, then /std again (include_top)
        proc = tf.EfficientNetImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32},
                                             do_center_crop=True)  # fmt: skip
    elif kind == "blip":
        model = tf.BlipModel(tf.BlipConfig(text_config=BERT_TEXT, vision_config=VIT, projection_dim=16))
        tok = bert_tokenizer(d)
    elif kind == "blip_itm":
        cfg = tf.BlipConfig(text_config=BERT_TEXT, vision_config=VIT, image_text_hidden_size=16)
        cfg.architectures = ["BlipForImageTextRetrieval"]
        model = tf.BlipForImageTextRetrieval(cfg)
        tok = bert_tokenizer(d)
    else:
        text = {k: v for k, v in BERT_TEXT.items() if k != "pad_token_id"} | {"max_position_embeddings": 16}
        model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=VIT))
        with torch.no_grad():  # not the −10 we use for models without one: the test can tell them apart
            model.logit_bias.fill_(-3.0)
        tok = siglip_tokenizer()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    proc.save_pretrained(d)
    return d


# stem/embeddings + blocks + (head) per tower; ALIGN's EfficientNet has no weights above its last block
# and projects the text [CLS] state with one Linear.
GROUPS = {"align": (3, 4), "blip": (4, 4), "blip_itm": (4, 4), "siglip": (4, 4)}
DIMS = {"align": 32, "blip": 16, "blip_itm": 16, "siglip": 32}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["align", "blip", "blip_itm", "siglip"])
def test_hf_family_trains_reloads_and_evaluates(tmp_path: Path, kind: str) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2, "test": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    spec = f"hf:{tiny_dir(tmp_path, kind)}"
    model = build_model(spec)
    assert model.family == kind
    groups = model.layer_groups()
    assert (len(groups["image"]), len(groups["text"])) == GROUPS[kind]
    x = torch.randn(2, 3, 32, 32)
    emb = model.encode_image(x)
    assert emb.shape == (2, DIMS[kind]) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert model.encode_text(["spore stage", "red network"]).shape == (2, DIMS[kind])
    if kind == "siglip":  # the checkpoint's sigmoid-loss bias is picked up for --loss sigmoid
        assert model.init_logit_bias == pytest.approx(float(model.model.logit_bias.detach()))

    run = tmp_path / "run"
    # the top group of each tower trains from the first step: gradients flow through the family's heads
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_every": 0, "unfreeze_start": {"image": 1, "text": 1},
           "lr": 1e-3, "warmup_steps": 0, "progress": False}  # fmt: skip
    if kind == "siglip":  # SigLIP with its own loss, starting from the checkpoint's bias
        cfg["loss"] = "sigmoid"
    result = train_run(data, desc, run, spec, cfg)
    assert result["status"] == "done"
    if kind == "siglip":
        assert result["logit_bias"] != model.init_logit_bias
        assert result["logit_bias"] == pytest.approx(-3.0, abs=0.1)
    before = build_model(spec).layer_groups()["image"][-1]
    reloaded, cfg_run = load_run(run)
    assert cfg_run["model"] == spec and reloaded.family == kind
    after = reloaded.layer_groups()["image"][-1]
    moved = any(not torch.equal(a, b) for a, b in zip(after.parameters(), before.parameters(), strict=True))
    assert moved  # the unfrozen top image group trained and was saved

    m = evaluate_run(run, data, tmp_path / "eval", split="test", n_boot=10, figures=False)
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert 0.0 <= m["recall@1"] <= 1.0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["recall@1"] == m["recall@1"]


def test_align_preprocess_matches_its_image_processor(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    d = tiny_dir(tmp_path, "align")
    model = build_model(f"hf:{d}")
    assert model.image_size == 32
    ramp = np.linspace(0, 255, 48 * 48 * 3).reshape(48, 48, 3).astype(np.uint8)  # smooth: resizers agree
    image = Image.fromarray(ramp)
    ours = model.preprocess(image)
    theirs = AutoProcessor.from_pretrained(d)(images=image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 32, 32)
    assert float((ours - theirs).abs().mean()) < 0.05 * float(theirs.abs().mean())
