"""``--adapter lora`` (peft) on lite, a tiny open_clip and a tiny transformers CLIP: exactly the adapters
and the heads train, the base weights never move, the merged weights equal the adapted model, a
killed run resumes bit-identically, and the run exports to ONNX like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fungalzsl.errors import FungalError
from fungalzsl.models import build_model, load_run
from fungalzsl.models.lora import adapted_depth, add_lora, load_adapter, merge_lora, resolve_targets
from fungalzsl.tensorfile import load_tensors
from fungalzsl.train.loop import train_run
from fungalzsl.train.settings import parse_lora_targets, resolve_config
from test_models_backends import tiny_hf_clip_dir, tiny_openclip_dir
from tiny_data import make_dataset, make_descriptions

LITE = {"epochs": 1, "batch_size": 6, "image_size": 32, "progress": False, "lr": 5e-3, "adapter": "lora",
        "lora_rank": 2, "lora_alpha": 4.0}  # fmt: skip
X = torch.rand(2, 3, 32, 32)
TEXTS = ["spore stage 0: small round yellow dots", "mycelium stage 1: dense deep red network"]


def lora_size(model: nn.Module, names: list[str], rank: int) -> int:
    """Parameters LoRA adds: A is r x (in·k·k) and B is out x r for each adapted layer."""
    total = 0
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, nn.Conv2d):
            total += rank * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels * rank
        else:
            total += rank * (m.in_features + m.out_features)
    return total


def head_size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.head_parameters()) + 1  # + the temperature


def check_run(run: Path, spec: str, options: dict, rank: int) -> None:
    """The run's counts, what moved, and merged == adapted outputs."""
    config = json.loads((run / "config.json").read_text())
    plain = build_model(spec, **options)  # the same base weights (and seeded heads) the run started from
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    targets = config["lora"]["targets"]
    names = [n for tower in ("image", "text") for n in targets[tower]]
    assert config["trainable_params"] == head_size(plain) + lora_size(plain, names, rank)

    # last/ holds the adapted model (base + adapters) un-merged; only adapters and heads moved
    adapted = build_model(spec, **options)
    add_lora(adapted, rank, config["lora"]["alpha"], config["lora"]["dropout"], targets)
    last = load_tensors(run / "last" / "model.safetensors")
    adapted.load_state_dict(last, strict=True)
    heads = {n for n, p in plain.named_parameters() if any(p is h for h in plain.head_parameters())}
    for key, value in last.items():
        if "lora_" in key:
            continue
        name = key.replace(".base_layer.", ".")
        if name in heads or name == "logit_scale":
            continue
        assert torch.equal(value, start[name]), f"{key} moved"  # weights and BatchNorm statistics alike
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in last.items())  # the adapters did train

    merged, _ = load_run(run)  # model.safetensors: the plain architecture with the adapters folded in
    adapted.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged.encode_image(X), adapted.encode_image(X), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            merged.encode_text(TEXTS), adapted.encode_text(TEXTS), atol=1e-5, rtol=1e-4
        )
        merge_lora(adapted)  # peft's merge in place gives the same weights as the saved merged file
    for k, v in merged.state_dict().items():
        torch.testing.assert_close(adapted.state_dict()[k], v, atol=1e-6, rtol=1e-5)

    # the adapter file alone, on the base model, gives the adapted model back
    again = build_model(spec, **options)
    load_adapter(again, run / "lora_adapter.safetensors")
    own = again.state_dict()
    again.load_state_dict(
        {k: v for k, v in merged.state_dict().items() if k in own and "lora_" not in k}, strict=False
    )
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(X), merged.encode_image(X), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(again.encode_text(TEXTS), merged.encode_text(TEXTS), atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lora-lite")
    data = make_dataset(tmp / "data", {"train": 2, "val": 1})
    desc = make_descriptions(tmp / "d.jsonl")
    train_run(data, desc, tmp / "run", "lite", LITE)
    return tmp / "run"


def test_lite_lora_trains_only_adapters_and_heads_and_merges(lite_run: Path) -> None:
    config = json.loads((lite_run / "config.json").read_text())
    targets = config["lora"]["targets"]
    assert "visual.blocks.6.0.conv_pw" in targets["image"] and "visual.conv_head" in targets["image"]
    assert len(targets["text"]) == 12  # query and value of the 6 MiniLM layers
    epoch = [json.loads(x) for x in (lite_run / "metrics.jsonl").read_text().splitlines()][-1]
    # by default every adapted group trains from epoch 0; lite caches the image tower below them
    assert epoch["unfrozen"] == {"image": 6, "text": 6} and epoch["cached_split"]["image"] == 12
    assert config["peak_rss_mb"] > 100 and config["total_params"] > config["trainable_params"]
    check_run(lite_run, "lite", {"image_size": 32, "embed_dim": 256}, rank=2)


def test_lite_lora_run_exports_to_onnx(lite_run: Path, tmp_path: Path) -> None:
    from fungalzsl.predict.onnx import OnnxClassifier, export_onnx

    export_onnx(lite_run, tmp_path / "export")
    merged, _ = load_run(lite_run)
    onnx = OnnxClassifier(tmp_path / "export")
    with torch.no_grad():
        want = merged.encode_image(X).numpy()
    got = onnx.session.run(None, {onnx.session.get_inputs()[0].name: X.numpy()})[0]
    assert got.shape == want.shape
    assert abs(got - want).max() < 1e-4


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_tiny_backends_lora_default_targets_train_and_merge(tmp_path: Path, backend: str) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    spec = (
        f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}"
        if backend == "openclip"
        else f"hf:{tiny_hf_clip_dir(tmp_path)}"
    )
    cfg = {**LITE, "lora_rank": 4, "lora_dropout": 0.1}  # one epoch: the best weights are the last
    train_run(data, desc, tmp_path / "run", spec, cfg)
    targets = json.loads((tmp_path / "run" / "config.json").read_text())["lora"]["targets"]
    want = ("mlp.c_fc", "mlp.c_proj") if backend == "openclip" else ("q_proj", "v_proj")
    for tower in ("image", "text"):
        assert len(targets[tower]) == 4 and all(n.endswith(want) for n in targets[tower])  # 2 blocks each
    check_run(tmp_path / "run", spec, {}, rank=4)


def test_targets_that_never_run_or_match_nothing_are_refused(tmp_path: Path) -> None:
    model = build_model(f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}")
    # nn.MultiheadAttention reads out_proj.weight itself: LoRA there would train nothing (peft #761)
    with pytest.raises(FungalError, match="never called by the forward") as e:
        add_lora(model, 2, 4.0, 0.0, {"image": ["attn.out_proj"], "text": []})
    assert "\n" not in str(e.value)
    with pytest.raises(FungalError, match="match no Linear or Conv2d layer of the text tower"):
        add_lora(model, 2, 4.0, 0.0, {"text": ["no_such_layer"]})
    names = resolve_targets(model, {"image": ["resblocks.1.mlp.c_fc"], "text": []})
    assert names == {"image": ["model.visual.transformer.resblocks.1.mlp.c_fc"], "text": []}
    add_lora(model, 2, 4.0, 0.0, {"image": ["resblocks.1.mlp.c_fc"], "text": []})
    assert adapted_depth(model) == {"image": 2, "text": 0}  # block 1 and the top group above it


def test_lora_targets_parse_from_the_command_line_form() -> None:
    assert parse_lora_targets("image=mlp.c_fc+mlp.c_proj,text=none") == {
        "image": ["mlp.c_fc", "mlp.c_proj"],
        "text": [],
    }
    assert resolve_config({}, {"lora_targets": "text=query"}).lora_targets == {"text": ["query"]}
    with pytest.raises(FungalError, match="lora_targets"):
        resolve_config({}, {"lora_targets": "mlp.c_fc"})
    with pytest.raises(FungalError, match="lora_targets"):
        resolve_config({}, {"lora_targets": "vision=mlp.c_fc"})


@pytest.mark.slow
def test_killed_lora_run_resumes_bit_identically(tmp_path: Path) -> None:
    """Adapters on the unfreezing schedule (optimiser groups join per epoch) with LoRA dropout (RNG)."""
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {**LITE, "epochs": 3, "unfreeze_every": 1, "lora_unfreeze": True, "lora_dropout": 0.2,
           "lora_targets": {"text": []}}  # fmt: skip
    straight = train_run(data, desc, tmp_path / "a", "lite", cfg)

    def crash(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(data, desc, tmp_path / "b", "lite", cfg, on_epoch_end=crash)
    resumed = train_run(data, desc, tmp_path / "b", "lite", cfg, resume=True)
    assert resumed["trainable_params"] == straight["trainable_params"]
    epochs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["unfrozen"]["image"] for r in epochs if r["type"] == "epoch"] == [0, 1, 2]
    for name in ("last/model.safetensors", "lora_adapter.safetensors", "model.safetensors"):
        a, b = load_tensors(tmp_path / "a" / name), load_tensors(tmp_path / "b" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_lora_run_is_a_table_row_with_its_parameter_count_and_memory(lite_run: Path, tmp_path: Path) -> None:
    from fungalzsl.eval.evaluate import evaluate_run
    from fungalzsl.eval.table import build_table, table_markdown

    evaluate_run(
        lite_run, lite_run.parent / "data", tmp_path / "eval", split="val", baseline=False, figures=False
    )
    config = json.loads((lite_run / "config.json").read_text())
    row = build_table([lite_run], split="val")[0]
    assert (
        row["trainable_params"] == config["trainable_params"] and row["peak_rss_mb"] == config["peak_rss_mb"]
    )
    cells = [c.strip() for c in table_markdown([row]).splitlines()[2].strip("|").split("|")]
    assert cells[-1] == "multi_positive + LoRA r2"
    assert cells[-3] == f"{config['trainable_params'] / 1e3:.1f} K"
    assert cells[-2] == f"{config['peak_rss_mb']:.0f} MB RSS"
    plain = table_markdown([{**row, "trainable_params": 26_409_569, "peak_rss_mb": None}]).splitlines()[2]
    assert "| 26.41 M | – |" in plain


def test_cli_bad_lora_settings_are_one_line_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fungalzsl.cli import app

    data = make_dataset(tmp_path / "data", {"train": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    base = ["train", "--data", str(data), "--descriptions", str(desc), "--quiet", "--adapter", "lora"]
    for extra, message in [
        (["--lora-targets", "vision=mlp.c_fc"], "lora_targets"),
        (["--lora-rank", "0"], "lora_rank"),
        (["--adapter", "dora"], "adapter"),
    ]:
        res = CliRunner().invoke(app, [*base, *extra, "--out", str(tmp_path / "run")])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["align", "blip", "blip_itm", "siglip"])
def test_every_hf_family_has_default_targets_that_run(tmp_path: Path, kind: str) -> None:
    from test_models_hf_families import tiny_dir

    model = build_model(f"hf:{tiny_dir(tmp_path, kind)}").eval()  # ALIGN's BatchNorm: no batch statistics
    before = model.encode_image(X[:, :, :32, :32]).detach()
    settings = add_lora(model, 2, 4.0, 0.0, {})  # every target is checked to run in the forward
    want = {"align": "project_conv", "blip": "qkv", "blip_itm": "qkv", "siglip": "q_proj"}[kind]
    assert any(n.endswith(want) for n in settings["targets"]["image"])
    assert settings["targets"]["text"] and all(d > 0 for d in adapted_depth(model).values())
    torch.testing.assert_close(model.encode_image(X[:, :, :32, :32]), before)  # lora_B = 0 at the start


def test_runs_without_adapters_never_need_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed: importing it raises
    plain = nn.Sequential(nn.Linear(2, 2))
    merge_lora(plain)  # the trainer's finish calls it for every run
    assert isinstance(plain[0], nn.Linear)
    with pytest.raises(FungalError, match="needs the peft package"):
        add_lora(build_model("openclip:RN50"), 2, 4.0, 0.0, {})
