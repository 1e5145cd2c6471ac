"""``openclip:…`` — any open_clip model behind the common interface.

Spec forms: ``openclip:ARCH@TAG`` (a pretrained tag such as ``openai``), ``openclip:ARCH@/path/ckpt.pt``
(a local checkpoint), ``openclip:ARCH`` (random init), ``openclip:hf-hub:ORG/NAME`` and
``openclip:local-dir:/path`` (a directory with ``open_clip_config.json``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fungalzsl.errors import fail
from fungalzsl.models.base import TwoTowerModel, l2norm
from fungalzsl.models.specs import OpenClipAlias


def _params(*items: Any) -> nn.Module:
    """A throwaway container grouping existing modules and loose parameters (not registered on the model)."""
    mods = nn.ModuleList([m for m in items if isinstance(m, nn.Module)])
    loose = [p for p in items if isinstance(p, nn.Parameter)]
    if loose:
        mods.append(nn.ParameterList(loose))
    return mods


def _image_groups(visual: nn.Module) -> list[nn.Module]:
    if hasattr(visual, "transformer") and hasattr(visual, "conv1"):  # VisionTransformer
        stem = _params(visual.conv1, visual.ln_pre, visual.class_embedding, visual.positional_embedding)
        top = _params(visual.ln_post, *([visual.proj] if isinstance(visual.proj, nn.Parameter) else []))
        return [stem, *visual.transformer.resblocks, top]
    if hasattr(visual, "layer4"):  # ModifiedResNet (RN50, ...)
        stem = _params(visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3)
        return [stem, visual.layer1, visual.layer2, visual.layer3, visual.layer4, visual.attnpool]
    if hasattr(visual, "trunk"):  # timm towers
        trunk = visual.trunk
        blocks = list(getattr(trunk, "blocks", None) or getattr(trunk, "stages", None) or [])
        rest = [m for n, m in visual.named_children() if n != "trunk"]
        return [trunk, *rest] if not blocks else [*blocks, _params(*rest)]
    return [visual]


def _text_groups(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "transformer") and hasattr(model, "token_embedding"):
        stem = _params(model.token_embedding, model.positional_embedding)
        proj = model.text_projection
        top = _params(model.ln_final, *([proj] if isinstance(proj, (nn.Parameter, nn.Module)) else []))
        return [stem, *model.transformer.resblocks, top]
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text.transformer, "resblocks"):
        stem = _params(text.token_embedding, text.positional_embedding)
        rest = [m for n, m in text.named_children() if n not in ("token_embedding", "transformer")]
        proj = getattr(text, "text_projection", None)
        return [
            stem,
            *text.transformer.resblocks,
            _params(*rest, *([proj] if isinstance(proj, nn.Parameter) else [])),
        ]
    return [text] if text is not None else []


def tower_with_pre_projection(visual: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the tower output ``visual(x)``, the pooled features the tower projects into it), in one pass and
    without changing the model (no temporary ``proj = None``: a concurrent or failed call sees the model
    as it is).

    * VisionTransformer: the pooled token after ``ln_post`` (class token or mean, as the model pools),
      before ``@ proj``: the output is exactly ``pre @ proj``;
    * ModifiedResNet (RN50, ...): attnpool's attention output at the pooled (mean) query, before its
      output projection ``c_proj``: the output is exactly ``c_proj(pre)`` (2048-d for RN50);
    * timm towers: the head's layers before its ``proj`` / ``mlp`` (the trunk's pooled features; with an
      attention-pool head, which ends in its own projection, that pool's output);
    * any other tower (no known projection): its output, twice."""
    if all(hasattr(visual, a) for a in ("_embeds", "_pool", "transformer", "proj")):  # VisionTransformer
        pre, _tokens = visual._pool(visual.transformer(visual._embeds(x)))
        return (pre if visual.proj is None else pre @ visual.proj), pre
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):  # ModifiedResNet
        h = visual.stem(x)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            h = layer(h)
        pre = _attnpool_values(visual.attnpool, h)
        return visual.attnpool.c_proj(pre), pre
    if hasattr(visual, "trunk") and isinstance(getattr(visual, "head", None), nn.Sequential):  # timm
        h = visual.trunk(x)
        layers = list(visual.head.named_children())
        cut = next((i for i, (name, _) in enumerate(layers) if name in ("proj", "mlp")), len(layers))
        for _, layer in layers[:cut]:
            h = layer(h)
        pre = h
        for _, layer in layers[cut:]:
            h = layer(h)
        return h, pre
    out = visual(x)
    return out, out


def _attnpool_values(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip's ``AttentionPool2d.forward`` with an identity output projection: (B, C), the attention
    output at the mean-token query, so that ``pool(x) == pool.c_proj(_attnpool_values(pool, x))``."""
    import torch.nn.functional as F

    x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)  # NCHW -> (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    c = x.shape[-1]
    out, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=c, num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=torch.eye(c, dtype=x.dtype, device=x.device),
        out_proj_bias=torch.zeros(c, dtype=x.dtype, device=x.device),
        use_separate_proj_weight=True, training=pool.training, need_weights=False,
    )  # fmt: skip
    return out[0]


def parse_openclip(rest: str) -> tuple[str, str | None]:
    """'ViT-B-32@openai' -> ('ViT-B-32', 'openai'); 'hf-hub:x/y' -> ('hf-hub:x/y', None)."""
    if rest.startswith(("hf-hub:", "local-dir:")):
        return rest, None
    name, _, tag = rest.partition("@")
    return name, (tag or None)


class OpenClipModel(TwoTowerModel):
    def __init__(
        self,
        rest: str,
        pretrained: bool = True,
        model_cfg: dict | None = None,
        alias: tuple[str, OpenClipAlias] | None = None,
    ):
        super().__init__()
        import open_clip

        name, tag = parse_openclip(rest)
        self.spec = alias[0] if alias else f"openclip:{rest}"
        if model_cfg is not None:
            # Reloading a run: its stored architecture config is registered under a private name, so
            # custom, hf-hub and local-dir models rebuild offline without their original source.
            name, tag = _register_config(model_cfg), None
            pretrained = False
        elif name not in open_clip.list_models() and not name.startswith(("hf-hub:", "local-dir:")):
            raise fail(
                f"unknown open_clip architecture '{name}'",
                "use one of open_clip.list_models(), e.g. openclip:ViT-B-32@openai",
            )
        if tag and pretrained and not Path(tag).is_file() and (name, tag) not in open_clip.list_pretrained():
            if "/" in tag or tag.endswith((".pt", ".bin", ".safetensors")):
                raise fail(f"checkpoint file {tag} does not exist", "check the path after '@'")
            known = ", ".join(t for n, t in open_clip.list_pretrained() if n == name) or "none"
            raise fail(f"open_clip has no pretrained tag '{tag}' for {name}", f"known tags: {known}")
        try:
            with _quiet_downloads():
                model = open_clip.create_model(name, pretrained=tag if pretrained else None, device="cpu")
        except (RuntimeError, OSError, ValueError) as e:
            where = (
                alias[1].files_help(alias[0].partition("@")[0])
                if alias
                else f"{_where_to_get(name, tag)}, then pass it as openclip:{name}@/path/to/that/file"
            )
            raise fail(
                f"cannot load open_clip model {alias[0] if alias else rest} offline "
                f"({str(e).splitlines()[0][:120]})",
                where,
            ) from None
        self.model = model
        self.arch = name
        self.model_cfg = open_clip.get_model_config(name) if model_cfg is None else model_cfg
        if self.model_cfg is not None and tag == "openai":
            self.model_cfg = {**self.model_cfg, "quick_gelu": True}  # OpenAI's weights use QuickGELU
        self.tokenizer = open_clip.get_tokenizer(name)
        cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        if alias:  # the model card's normalisation and text template, whatever the config file says
            cfg = {**cfg, "mean": alias[1].mean, "std": alias[1].std}
            self.text_template = alias[1].template
        self.preprocess = open_clip.image_transform(
            self.image_size, is_train=False, mean=cfg.get("mean"), std=cfg.get("std")
        )
        with torch.no_grad():
            self.logit_scale.copy_(model.logit_scale.detach())
        model.logit_scale.requires_grad_(False)  # ours replaces it
        self.embed_dim = int(self.model_cfg.get("embed_dim", 0)) if self.model_cfg else 0

    def layer_groups(self) -> dict[str, list[nn.Module]]:
        return {"image": _image_groups(self.model.visual), "text": _text_groups(self.model)}

    def image_trunk(self, x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
        return x if n == start else self.model.encode_image(x)

    def image_head(self, h: torch.Tensor, n: int) -> torch.Tensor:
        return l2norm(h if n else self.model.encode_image(h))

    def encode_image_with_backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass through the image tower: (normalised embedding, its pooled features before the
        projection); see :func:`tower_with_pre_projection` for what each tower type gives."""
        out, pre = tower_with_pre_projection(self.model.visual, x)
        return l2norm(out), pre

    def text_trunk(self, texts: list[str], n: int) -> Any:
        if n == 0:
            return texts
        return self.model.encode_text(self.tokenizer(texts).to(self.logit_scale.device))

    def text_head(self, h: Any, n: int) -> torch.Tensor:
        if n == 0:
            h = self.model.encode_text(self.tokenizer(list(h)).to(self.logit_scale.device))
        return l2norm(h)

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        try:
            self.model.set_grad_checkpointing(enable)
            return True
        except (AttributeError, AssertionError, NotImplementedError):
            return False

    def architecture_files(self) -> dict[str, bytes]:
        if not self.model_cfg:
            return {}
        return {"open_clip_config.json": json.dumps({"model_cfg": self.model_cfg}, indent=2).encode()}


def _register_config(cfg: dict) -> str:
    """Register an architecture config with open_clip under a content-derived name; returns the name."""
    import hashlib
    import tempfile

    import open_clip

    name = "fungalzsl-" + hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    if name not in open_clip.list_models():
        d = Path(tempfile.mkdtemp(prefix="fungalzsl-openclip-"))
        (d / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(d)
    return name


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """Offline, huggingface_hub logs every retry and open_clip logs the failure: our one line says it."""
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _where_to_get(name: str, tag: str | None) -> str:
    """Name the exact file a user must fetch on a networked machine for ``name@tag``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    if cfg.get("hf_hub"):  # a plain state dict (OpenAI's own .pt files are TorchScript archives)
        return f"download open_clip_pytorch_model.bin from https://huggingface.co/{cfg['hf_hub'].rstrip('/')}"
    if cfg.get("url"):
        return f"download {cfg['url']}"
    return "download the checkpoint with network access"
