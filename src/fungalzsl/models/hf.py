"""``hf:ID_OR_DIR`` — a transformers CLIP, SigLIP, ALIGN or BLIP (ITC) model behind the common interface.

Family differences (which modules pool/project, layer groups, temperature) live in hf_families.py."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import transforms

from fungalzsl.errors import fail
from fungalzsl.models import hf_families as fam
from fungalzsl.models.base import TwoTowerModel, l2norm


def _load(source: str, pretrained: bool) -> tuple[nn.Module, Any, Any]:
    from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress output is the one users read
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source)
        cls = fam.model_class(config)
        if pretrained:
            model = (cls or AutoModel).from_pretrained(source, local_files_only=local or None)
        else:
            model = cls(config) if cls is not None else AutoModel.from_config(config)
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as e:
        what = f"directory {source}" if local else f"hub id {source}"
        raise fail(
            f"cannot load transformers model from {what} ({str(e).splitlines()[0][:160]})",
            "with no network, save it once with save_pretrained() and pass hf:/that/directory",
        ) from None
    try:
        proc = AutoProcessor.from_pretrained(source)
        image_proc = getattr(proc, "image_processor", None)
    except (OSError, ValueError):
        image_proc = None
    return model, tok, image_proc


# PIL resample codes used by transformers image processors → torchvision modes
_INTERPOLATION = {
    0: transforms.InterpolationMode.NEAREST,
    2: transforms.InterpolationMode.BILINEAR,
    3: transforms.InterpolationMode.BICUBIC,
}


def _hw(size: Any) -> tuple[int, int] | None:
    """(height, width) of an image processor's size (a dict or a SizeDict), or None."""
    for get in (lambda d, k: d[k], getattr):
        try:
            h, w = get(size, "height"), get(size, "width")
        except (KeyError, TypeError, AttributeError):
            continue
        if h and w:
            return int(h), int(w)
    return None


class HFClipModel(TwoTowerModel):
    def __init__(self, source: str, pretrained: bool = True):
        super().__init__()
        model, self.tokenizer, image_proc = _load(source, pretrained)
        if not fam.supported(model):
            raise fail(
                f"hf:{source} is a {type(model).__name__}, not a two-tower image-text model",
                "use a CLIP, SigLIP, ALIGN or BLIP model",
            )
        self.spec = f"hf:{source}"
        self.model = model
        self.image_proc = image_proc
        self.family = fam.family(model)
        vc = model.config.vision_config
        self.embed_dim = fam.embed_dim(model)
        mean = getattr(image_proc, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(image_proc, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        crop = _hw(getattr(image_proc, "crop_size", None)) if self.family == "align" else None
        if crop is not None:
            # ALIGN's vision config says 600 px, but its EfficientNet processor (what it was trained
            # with) squashes to `size` (346²), crops 289² and, with include_top, divides by std twice.
            self.image_size = crop[0]
            resample = getattr(image_proc, "resample", None)
            mode = _INTERPOLATION.get(3 if resample is None else int(resample), _INTERPOLATION[3])
            steps = [
                transforms.Resize(_hw(getattr(image_proc, "size", None)) or crop, interpolation=mode),
                transforms.CenterCrop(crop),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
            if getattr(image_proc, "include_top", False):
                steps.append(transforms.Normalize((0.0, 0.0, 0.0), std))
            self.preprocess = transforms.Compose(steps)
        else:
            self.image_size = int(vc.image_size)
            self.preprocess = transforms.Compose(
                [
                    transforms.Resize(self.image_size, interpolation=_INTERPOLATION[3]),
                    transforms.CenterCrop(self.image_size),
                    transforms.ToTensor(),
                    transforms.Normalize(mean, std),
                ]
            )
        with torch.no_grad():
            self.logit_scale.fill_(fam.init_logit_scale(model))
        self.init_logit_bias = fam.logit_bias(model)  # SigLIP's, for the sigmoid loss
        self.max_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 77))

    def layer_groups(self) -> dict[str, list[nn.Module]]:
        return fam.layer_groups(self.model)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        return fam.image_features(self.model, x)

    def _text(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained with max_length padding; CLIP pools at EOS and BERT at [CLS], so plain
        # padding is fine for the others.
        pad = "max_length" if self.family == "siglip" else True
        enc = self.tokenizer(
            texts, padding=pad, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.logit_scale.device)
        return fam.text_features(self.model, dict(enc))

    def image_trunk(self, x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
        return x if n == start else self._image(x)

    def encode_image_with_backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, pooled = fam.image_features_and_backbone(self.model, x)
        return l2norm(emb), pooled

    def image_head(self, h: torch.Tensor, n: int) -> torch.Tensor:
        return l2norm(h if n else self._image(h))

    def text_trunk(self, texts: list[str], n: int) -> Any:
        return texts if n == 0 else self._text(texts)

    def text_head(self, h: Any, n: int) -> torch.Tensor:
        return l2norm(h if n else self._text(list(h)))

    def set_grad_checkpointing(self, enable: bool = True) -> bool:
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()
        return True

    def architecture_files(self) -> dict[str, bytes]:
        """config + tokenizer (+ image processor), so load_run needs neither the hub nor the source dir."""
        with tempfile.TemporaryDirectory() as d:
            self.model.config.save_pretrained(d)
            self.tokenizer.save_pretrained(d)
            if self.image_proc is not None:
                self.image_proc.save_pretrained(d)
            return {f"hf/{p.name}": p.read_bytes() for p in Path(d).iterdir() if p.is_file()}
