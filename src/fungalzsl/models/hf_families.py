"""What differs between the transformers two-tower families behind ``hf:``, keyed by ``config.model_type``.

CLIP and SigLIP share one layout (``vision_model``/``text_model`` with ``encoder.layers``). ALIGN pairs an
EfficientNet (``encoder.blocks``, BatchNorm) with BERT and scores with ``/ temperature``; BLIP's
``BlipModel`` is CLIP-like with a BERT text tower; ``BlipForImageTextRetrieval`` (the ``blip-itm-*``
checkpoints) keeps its image–text contrastive (ITC) heads as ``vision_proj``/``text_proj`` on the [CLS]
states. Everything else in hf.py is shared, so the families train and evaluate exactly like CLIP."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fungalzsl.models.base import INIT_LOGIT_SCALE
from fungalzsl.models.openclip import _params

FAMILIES = ("clip", "siglip", "align", "blip", "blip_itm")


def family(model: nn.Module) -> str:
    """The family of a loaded transformers model; unknown types with CLIP's layout count as ``clip``."""
    kind = str(getattr(model.config, "model_type", "")).lower()
    if kind == "blip":
        return "blip_itm" if hasattr(model, "text_encoder") else "blip"
    if kind in ("align", "siglip", "siglip2"):
        return "align" if kind == "align" else "siglip"
    return "clip"


def model_class(config: Any) -> type[nn.Module] | None:
    """The class to build for ``config`` when AutoModel would pick the wrong one: a ``blip-itm-*``
    checkpoint loads into BlipModel with its text tower and ITC heads silently re-initialised."""
    if "BlipForImageTextRetrieval" in (getattr(config, "architectures", None) or []):
        from transformers import BlipForImageTextRetrieval

        return BlipForImageTextRetrieval
    return None


def supported(model: nn.Module) -> bool:
    return hasattr(model, "vision_model") and (hasattr(model, "text_model") or hasattr(model, "text_encoder"))


def text_tower(model: nn.Module) -> nn.Module:
    return model.text_encoder if family(model) == "blip_itm" else model.text_model


def embed_dim(model: nn.Module) -> int:
    cfg = model.config
    if family(model) == "blip_itm":
        return int(cfg.image_text_hidden_size)
    return int(getattr(cfg, "projection_dim", 0) or cfg.vision_config.hidden_size)


def init_logit_scale(model: nn.Module) -> float:
    """log(1/τ) the checkpoint was trained with; its own temperature parameter is frozen, ours trains."""
    fam = family(model)
    if fam == "align":  # ALIGN divides by a learned temperature
        model.temperature.requires_grad_(False)
        return math.log(1.0 / float(model.temperature.detach().clamp(min=1e-4)))
    if fam == "blip_itm":
        # The ITC temperature is not stored in blip-itm checkpoints (BLIP trains it, clamped to
        # [0.001, 0.5]); CLIP's 0.07 is the usual start and is learned from there.
        return INIT_LOGIT_SCALE
    model.logit_scale.requires_grad_(False)
    return float(model.logit_scale.detach().reshape(()))


def logit_bias(model: nn.Module) -> float | None:
    """SigLIP's learned bias of the sigmoid loss, if the checkpoint has one."""
    b = getattr(model, "logit_bias", None)
    return float(b.detach().reshape(())) if isinstance(b, torch.Tensor) else None


def image_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return image_features_and_backbone(model, x)[0]


def image_features_and_backbone(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(projected image features, the pooled features the projection reads) of one vision pass."""
    fam = family(model)
    out = model.vision_model(pixel_values=x)
    if fam == "blip_itm":
        cls = out.last_hidden_state[:, 0, :]
        return model.vision_proj(cls), cls
    pooled = out.pooler_output
    if pooled.ndim > 2:  # ALIGN's pooler keeps 1×1 spatial dims in some versions
        pooled = pooled.flatten(1)
    proj = getattr(model, "visual_projection", None)
    return (proj(pooled) if proj is not None else pooled), pooled  # ALIGN and SigLIP: no projection


def text_features(model: nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    fam = family(model)
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    out = text_tower(model)(**inputs)
    if fam == "align":  # ALIGN projects the [CLS] state, not BERT's pooler
        return model.text_projection(out.last_hidden_state[:, 0, :])
    if fam == "blip_itm":
        return model.text_proj(out.last_hidden_state[:, 0, :])
    proj = getattr(model, "text_projection", None)
    return proj(out.pooler_output) if proj is not None else out.pooler_output


def layer_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Per tower bottom → top: stem/embeddings, each block or layer, then the head (norm + projection)."""
    fam = family(model)
    v, t = model.vision_model, text_tower(model)

    def some(*mods: Any) -> nn.Module:
        return _params(*[m for m in mods if m is not None])

    if fam == "align":  # EfficientNet blocks (MBConv), the pooler has no weights
        image = [v.embeddings, *v.encoder.blocks]
        text = [t.embeddings, *t.encoder.layer, model.text_projection]
        return {"image": image, "text": text}
    if fam in ("blip", "blip_itm"):
        vproj = model.vision_proj if fam == "blip_itm" else model.visual_projection
        tproj = (
            model.text_proj if fam == "blip_itm" else some(getattr(t, "pooler", None), model.text_projection)
        )
        image = [v.embeddings, *v.encoder.layers, some(v.post_layernorm, vproj)]
        return {"image": image, "text": [t.embeddings, *t.encoder.layer, tproj]}
    pre = [x for x in (getattr(v, "pre_layrnorm", None),) if x is not None]
    vtop = some(
        getattr(v, "post_layernorm", None),
        getattr(v, "head", None),
        getattr(model, "visual_projection", None),
    )
    ttop = some(
        getattr(t, "final_layer_norm", None),
        getattr(t, "head", None),
        getattr(model, "text_projection", None),
    )
    return {
        "image": [_params(v.embeddings, *pre), *v.encoder.layers, vtop],
        "text": [t.embeddings, *t.encoder.layers, ttop],
    }
