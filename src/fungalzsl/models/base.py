"""The one interface every backend answers (see docs/architecture.md, "Model interface").

Besides ``encode_image``/``encode_text`` each tower is exposed as a *split* forward:
``image_trunk(x, n)`` runs the bottom ``n`` layer groups and ``image_head(h, n)`` runs the rest and
returns the normalised embedding, so ``image_head(image_trunk(x, n), n) == encode_image(x)``. The
trainer uses the split to compute the frozen bottom of a tower once per unfreeze stage and train only
the top; a backend says where it can split with ``cache_split``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fungalzsl.predict.zeroshot import clamp_logit_scale

TOWERS = ("image", "text")
# CLIP's initial temperature (tau = 0.07), in log space; the ceiling on 1/tau is the zero-shot rule's.
INIT_LOGIT_SCALE = math.log(1 / 0.07)


class TwoTowerModel(nn.Module):
    """An image tower and a text tower embedding into one space, with a learnable temperature."""

    spec: str = ""
    image_size: int = 224
    embed_dim: int = 0
    text_template: str | None = None  # the model's own zero-shot template, if its authors use one
    preprocess: Callable[[Any], torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    # -- the small public protocol -------------------------------------------------------------
    def layer_groups(self) -> dict[str, list[nn.Module]]:
        """Ordered groups per tower, bottom → top; the unfreezing schedule walks them in reverse."""
        raise NotImplementedError

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters that always train (new projection heads); ``logit_scale`` is added by the trainer."""
        return []

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_trunk(x, 0), 0)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_head(self.text_trunk(list(texts), 0), 0)

    def encode_image_with_backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass, two outputs: the normalised embedding (B, D) that ``encode_image`` gives and
        the image tower's backbone features (B, F), not normalised (few-shot adapters fit on them).

        Built on the split forward: the backbone features are ``image_trunk(x, n)`` flattened, ``n`` all
        image groups. For ``lite`` that is the pooled pre-projection vector (EfficientNet-Lite0: 1280-d);
        a backend whose full split already holds the projection overrides this (transformers: the
        pooler output before ``visual_projection``); open_clip's full split is its tower output."""
        n = len(self.layer_groups()["image"])
        h = self.image_trunk(x, n)
        return self.image_head(h, n), h.flatten(1)

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) image backbone features (see :meth:`encode_image_with_backbone`)."""
        return self.encode_image_with_backbone(x)[1]

    def clamped_logit_scale(self) -> torch.Tensor:
        """exp(logit_scale) with 1/tau capped at 100, as CLIP does (``predict.zeroshot.clamp_logit_scale``)."""
        return clamp_logit_scale(self.logit_scale)

    # -- split forward used for prefix caching --------------------------------------------------
    def image_trunk(self, x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
        """Output of image groups ``start..n-1`` applied to ``x`` (the output of the bottom ``start``
        groups; ``n == 0``: the input itself). Only backends with partial splits use ``start``."""
        raise NotImplementedError

    def image_head(self, h: torch.Tensor, n: int) -> torch.Tensor:
        """Run image groups ``n..`` and the projection on ``h``; L2-normalised (B, D)."""
        raise NotImplementedError

    def text_trunk(self, texts: list[str], n: int) -> Any:
        """Output of the bottom ``n`` text groups (``n == 0``: the strings themselves)."""
        raise NotImplementedError

    def text_head(self, h: Any, n: int) -> torch.Tensor:
        raise NotImplementedError

    def cache_split(self, tower: str, n_frozen: int) -> int:
        """The deepest split point ≤ ``n_frozen`` this backend supports for ``tower`` (0 = no caching).

        Default: only a fully frozen tower can be cached (its whole backbone output)."""
        return n_frozen if n_frozen == len(self.layer_groups()[tower]) else 0

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        """Trade compute for memory where the backend supports it; returns whether it did."""
        return False

    def architecture_files(self) -> dict[str, bytes]:
        """Small files (configs, tokenizers) a run directory needs to rebuild this model offline."""
        return {}


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def set_bn_eval(module: nn.Module) -> None:
    """Put every BatchNorm under ``module`` in eval mode: frozen layers must not drift their statistics."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
