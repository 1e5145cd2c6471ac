"""LoRA adapters on any backend, through the ``peft`` library (``pip install 'fungalzsl[lora]'``).

``add_lora(model, rank, alpha, dropout, targets)`` injects peft LoRA layers in place into the modules
named by ``targets`` (per tower; the family's defaults when a tower is not named), so the model keeps
its class, its interface and its layer groups. What is adapted must really run in the forward: a
module whose forward is never called (the ``out_proj`` of a fused ``nn.MultiheadAttention``, the
projections of open_clip's ``AttentionPool2d``, which read ``.weight`` directly) would train nothing,
so every target is checked with one forward pass and refused when it never ran.

A LoRA layer keeps the frozen weight as ``NAME.base_layer.weight`` and the adapter as
``NAME.lora_A.default.weight`` / ``NAME.lora_B.default.weight``; ``merged_state`` gives the plain
weights ``W + (alpha/r)·B·A`` under the original names (what ``model.safetensors``, ``export`` and
``load_run`` use), ``adapter_state`` the adapter alone, and ``merge_lora`` folds the adapters into the
model in place (peft's merge), leaving a plain model."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import torch
from torch import nn

from fungalzsl.errors import fail
from fungalzsl.models.base import TOWERS, TwoTowerModel
from fungalzsl.models.specs import expand_alias

ADAPTER_MARK = "lora_"  # in the name of every adapter tensor and module peft creates
ADAPTER_NAME = "default"

# Default targets per backend (suffixes of module names, ``*`` wildcards): see docs/training.md.
_LITE_BLOCKS = [f"blocks.{s}.{j}" for s, n in ((5, 4), (6, 1)) for j in range(n)]  # the 7x7 stages
DEFAULT_TARGETS: dict[str, dict[str, list[str]]] = {
    "lite": {
        "image": [f"{b}.{c}" for b in _LITE_BLOCKS for c in ("conv_pw", "conv_pwl")] + ["conv_head"],
        "text": ["attention.self.query", "attention.self.value"],
    },
    # open_clip: the MLP Linear layers of every residual block (attention is a fused MultiheadAttention);
    # ModifiedResNet (RN50...): the convs of layer4; timm towers: qkv and the MLP; HF text towers: q/v.
    "openclip": {
        "image": ["mlp.c_fc", "mlp.c_proj", "layer4.*.conv[123]", "attn.qkv", "mlp.fc1", "mlp.fc2"],
        "text": ["mlp.c_fc", "mlp.c_proj", "query", "value", "q_proj", "v_proj"],
    },
    # transformers: CLIP/SigLIP q_proj/v_proj, BLIP's fused qkv, ALIGN's pointwise projections; BERT q/v
    "hf": {
        "image": ["q_proj", "v_proj", "self_attn.qkv", "project_conv"],
        "text": ["q_proj", "v_proj", "attention.self.query", "attention.self.value"],
    },
}
_SUPPORTED = (nn.Linear, nn.Conv2d)


def backend_of(model: TwoTowerModel) -> str:
    """``lite``, ``openclip`` or ``hf`` (aliases such as ``bioclip`` are open_clip models)."""
    return "lite" if model.spec == "lite" else expand_alias(model.spec)[0].split(":", 1)[0]


def is_adapter_param(name: str) -> bool:
    return ADAPTER_MARK in name


def is_adapted(model: nn.Module) -> bool:
    return any(is_adapter_param(n) for n, _ in model.named_parameters())


def _tower_modules(model: TwoTowerModel) -> dict[str, set[int]]:
    """ids of every module inside each tower's layer groups."""
    return {
        tower: {id(m) for g in groups for m in g.modules()} for tower, groups in model.layer_groups().items()
    }


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def resolve_targets(model: TwoTowerModel, targets: dict[str, list[str]]) -> dict[str, list[str]]:
    """Full module names per tower that the patterns select (Linear and Conv2d layers only); a tower
    left out of ``targets`` gets the backend's defaults, an empty list adapts nothing there."""
    defaults = DEFAULT_TARGETS.get(backend_of(model), {})
    inside = _tower_modules(model)
    out: dict[str, list[str]] = {}
    for tower in TOWERS:
        patterns = targets[tower] if tower in targets else defaults.get(tower, [])
        chosen = [
            name
            for name, m in model.named_modules()
            if id(m) in inside.get(tower, set())
            and isinstance(m, _SUPPORTED)
            and not is_adapter_param(name)
            and any(_matches(name, p) for p in patterns)
        ]
        if patterns and not chosen:
            raise fail(
                f"LoRA targets {', '.join(patterns)} match no Linear or Conv2d layer of the {tower} tower "
                f"of {model.spec}",
                f"pass --lora-targets {tower}=NAME (module-name suffixes; see docs/training.md)",
            )
        out[tower] = chosen
    return out


def _check_called(model: TwoTowerModel, names: list[str]) -> None:
    """Refuse targets whose forward never runs in encode_image/encode_text (LoRA there trains nothing)."""
    modules = dict(model.named_modules())
    ran: set[str] = set()
    hooks = [
        modules[n].register_forward_hook(lambda *_, n=n: ran.add(n))  # type: ignore[misc]
        for n in names
    ]
    device = model.logit_scale.device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model.encode_image(torch.zeros(1, 3, model.image_size, model.image_size, device=device))
            model.encode_text(["a"])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    idle = [n for n in names if n not in ran]
    if idle:
        raise fail(
            f"LoRA target {idle[0]} is never called by the forward of {model.spec} (its parent reads its "
            f"weight directly, as nn.MultiheadAttention does with out_proj), so it would train nothing",
            "choose Linear/Conv2d layers that run, e.g. the MLP's c_fc/c_proj (docs/training.md)",
        )


def add_lora(
    model: TwoTowerModel, rank: int, alpha: float, dropout: float, targets: dict[str, list[str]]
) -> dict[str, Any]:
    """Inject peft LoRA layers into ``model`` in place; returns the settings (for config.json and the
    adapter file). Base weights are left untouched; lora_B starts at zero, so outputs do not change."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise fail("--adapter lora needs the peft package", "pip install 'fungalzsl[lora]'") from None
    chosen = resolve_targets(model, targets)
    names = [n for tower in TOWERS for n in chosen[tower]]
    if not names:
        raise fail("LoRA targets select no layer in either tower", "name some with --lora-targets")
    _check_called(model, names)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    settings = {"type": "lora", "rank": rank, "alpha": alpha, "dropout": dropout, "targets": chosen}
    model.adapter_settings = settings
    return settings


def _plain_name(key: str) -> str:
    return key.replace(".base_layer.", ".")


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors alone (peft's naming without the adapter name), contiguous on CPU."""
    return {
        k.replace(f".{ADAPTER_NAME}.", "."): v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if is_adapter_param(k)
    }


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with every adapter folded in (``W + scaling·B·A``, peft's delta), under the
    names of the plain model; the model itself is not changed."""
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        deltas = {
            f"{name}.weight": m.get_delta_weight(ADAPTER_NAME)
            for name, m in model.named_modules()
            if isinstance(m, LoraLayer) and ADAPTER_NAME in m.lora_A
        }
        out = {}
        for k, v in model.state_dict().items():
            if is_adapter_param(k):
                continue
            plain = _plain_name(k)
            value = v + deltas[plain].to(v.dtype) if plain in deltas else v
            out[plain] = value.detach().cpu().contiguous()
    return out


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base layer (peft's ``merge``) and put the base layer back in place:
    afterwards ``model`` is a plain model whose state dict loads ``model.safetensors``. A model without
    adapters is left as it is (and peft is not imported: it is an optional dependency)."""
    if not is_adapted(model):
        return
    from peft.tuners.lora import LoraLayer

    for name, m in list(model.named_modules()):
        if isinstance(m, LoraLayer):
            m.merge(safe_merge=True, adapter_names=[ADAPTER_NAME])
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, m.get_base_layer())
    for attr in ("peft_config", "adapter_settings"):
        if hasattr(model, attr):
            delattr(model, attr)


def adapter_metadata(settings: dict[str, Any]) -> dict[str, str]:
    """The adapter file's header: the settings as JSON, so the file alone says what it adapts."""
    return {"adapter": json.dumps(settings, sort_keys=True)}


def load_adapter(model: TwoTowerModel, path: Any) -> None:
    """Inject the adapter saved at ``path`` (``RUN/lora_adapter.safetensors``) into a plain ``model`` built
    from the run's spec and load its tensors: the un-merged form of the run's weights."""
    from fungalzsl.tensorfile import load_tensors, read_metadata

    settings = json.loads(read_metadata(path).get("adapter") or "{}")
    if settings.get("type") != "lora":
        raise fail(
            f"{path} is not a LoRA adapter file", "pass RUN/lora_adapter.safetensors of a --adapter lora run"
        )
    targets = settings["targets"]
    add_lora(model, int(settings["rank"]), float(settings["alpha"]), float(settings["dropout"]), targets)
    tensors = load_tensors(path, "adapter")
    own = {k.replace(f".{ADAPTER_NAME}.", "."): k for k in model.state_dict() if is_adapter_param(k)}
    if set(own) != set(tensors):
        raise fail(f"{path} does not match the adapter layers of {model.spec}", "pass the run's own model")
    model.load_state_dict({own[k]: v for k, v in tensors.items()}, strict=False)


def adapted_depth(model: TwoTowerModel) -> dict[str, int]:
    """Per tower, how many top layer groups reach down to the lowest one holding an adapter (0: none)."""
    out = {}
    for tower, groups in model.layer_groups().items():
        holding = [
            i for i, g in enumerate(groups) if any(is_adapter_param(n) for n, _ in g.named_parameters())
        ]
        out[tower] = len(groups) - min(holding) if holding else 0
    return out
