"""The transformers backend through the public spec ``hf:DIR`` with a tiny random Llama and a word-level
tokenizer with a chat template, both built and saved here (no download)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.io import read_jsonl
from fungalzsl.text.backends import BackendOptions, open_backend
from fungalzsl.text.generate import generate_descriptions

WORDS = [
    "the",
    "a",
    "spore",
    "hyphae",
    "mycelium",
    "is",
    "are",
    "thin",
    "dense",
    "round",
    "orange",
    "red",
    "yellow",
    "branching",
    "filament",
    "wall",
    "cell",
    "tip",
    "network",
    "septum",
    "colony",
    "germinate",
    "absorb",
    "nutrient",
    "enzyme",
    "substrate",
    "radial",
    "hue",
    "layer",
    "grows",
    "forms",
    "with",
    "and",
    "of",
    "in",
    "under",
    "microscope",
    "fungal",
    "growth",
    "stage",
    "focusing",
    "on",
    "its",
    "key",
    "biological",
    "characteristics",
]
SPECIAL = ["[PAD]", "[UNK]", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-lm")
    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=SPECIAL[4:],
    )  # fmt: skip
    tok.chat_template = TEMPLATE
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(d)
    return str(d)


def test_batches_length_filter_and_provenance(tiny_lm, tmp_path):
    be = open_backend(f"hf:{tiny_lm}", BackendOptions(device="cpu"))
    sizes: list[int] = []
    real_generate = be._lm.generate

    def counting_generate(**kw):
        sizes.append(kw["input_ids"].shape[0])
        return real_generate(**kw)

    be._lm.generate = counting_generate
    rep = generate_descriptions(
        be, per_class=6, out=tmp_path / "d.jsonl", batch_size=4, min_words=3, max_words=12, max_tokens=14,
        seed=1, near_duplicate=1.0, max_resample=10,
    )  # fmt: skip
    recs = read_jsonl(rep.out)
    assert {c: sum(r["class"] == c for r in recs) for c in ("spore", "hyphae", "mycelium")} == {
        "spore": 6, "hyphae": 6, "mycelium": 6,
    }  # fmt: skip
    assert all(3 <= len(r["text"].split()) <= 12 for r in recs)
    # Random weights babble past 12 words often: those answers were resampled, not kept.
    assert sum(rep.rejected[c]["too_long"] for c in rep.rejected) > 0
    assert max(sizes) == 4 and all(1 <= s <= 4 for s in sizes)
    assert all(set(r["text"].split()) <= set(WORDS) for r in recs)  # decoded words, special tokens stripped
    r0 = recs[0]
    assert r0["backend"] == "hf" and r0["model"] == tiny_lm and r0["temperature"] == 0.9
    assert r0["sampling"]["max_tokens"] == 14


def test_same_seed_same_output(tiny_lm, tmp_path):
    kw = {"classes": ["spore"], "per_class": 4, "batch_size": 2, "min_words": 1, "max_words": 40,
          "max_tokens": 12, "seed": 3, "options": BackendOptions(device="cpu")}  # fmt: skip
    a = generate_descriptions(f"hf:{tiny_lm}", out=tmp_path / "a.jsonl", **kw)
    b = generate_descriptions(f"hf:{tiny_lm}", out=tmp_path / "b.jsonl", **kw)
    assert [r["text"] for r in read_jsonl(a.out)] == [r["text"] for r in read_jsonl(b.out)]


def test_cli_spec_and_bad_model_dir(tiny_lm, tmp_path):
    out = tmp_path / "cli.jsonl"
    res = CliRunner().invoke(app, [
        "describe", "--backend", f"hf:{tiny_lm}", "--per-class", "2", "--out", str(out), "--min-words", "1",
        "--max-tokens", "8", "--device", "cpu", "--classes", "spore",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(read_jsonl(out)) == 2
    with pytest.raises(FungalError, match=r"directory .* does not exist"):
        open_backend(f"hf:{tmp_path / 'nothing-here'}", BackendOptions(device="cpu"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FungalError, match="cannot load the Hugging Face model"):
        open_backend(f"hf:{tmp_path / 'empty'}", BackendOptions(device="cpu"))


def test_llamacpp_missing_or_bad_file_is_one_line(tmp_path):
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(FungalError, match=r"pip install 'fungalzsl\[llamacpp\]'"):
            open_backend(f"llamacpp:{tmp_path / 'm.gguf'}")
        return
    with pytest.raises(FungalError, match="does not exist"):
        open_backend(f"llamacpp:{tmp_path / 'm.gguf'}")


def test_cuda_asked_for_without_a_gpu_is_one_line(tiny_lm):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(FungalError, match="no CUDA GPU"):
        open_backend(f"hf:{tiny_lm}", BackendOptions(device="cuda"))
