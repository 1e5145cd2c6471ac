"""A fitted few-shot adapter: what ``fungalzsl adapt`` writes into a run directory and what the
``Classifier`` and ``fungalzsl evaluate`` apply when they score that run.

Files (names in :mod:`fungalzsl.rundir`):

* ``RUN/adapter.json``: ``{"format": "fungalzsl-adapter-v1", "method": "tip"|"probe"|"prototype"|"anchored",
  "features": "embedding"|"backbone"|"both", "views": 1|8, "classes": [...], "params": {...}, ...provenance}``
  (:mod:`fungalzsl.fewshot.features`; a file without ``features`` / ``views``, written before they
  existed, means ``embedding`` / 1) (``params``: tip ``alpha``, ``beta``; probe ``l2``;
  prototype ``scale``; anchored ``scale``, ``text_weight``);
* ``RUN/adapter.safetensors``: tip ``keys`` (N, D) and ``key_labels`` (N,) — the shots' normalised
  embeddings and class indices; probe ``weight`` (C, D) and ``bias`` (C,); prototype and anchored ``prototypes`` (C, D) (anchored's
  already hold the text: scoring is the prototype formula).

Scoring (formulas in :mod:`fungalzsl.fewshot.methods`): the adapter's inputs ``x`` (its ``features`` under
its ``views``) and the zero-shot logits ``s · cos(e, c_k)`` of the centre-crop embedding ``e`` go in,
adapted logits come out, probabilities are their softmax. Only tip uses the zero-shot logits; anchored
needs the text in the space of ``x`` and so fits on ``embedding`` or ``both`` features (the text anchors
the embedding half), not on ``backbone`` alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.fewshot import methods as m
from fungalzsl.fewshot.features import FEATURES, VIEWS
from fungalzsl.io import atomic_write_json, read_text_file
from fungalzsl.rundir import ADAPTER_FILE, ADAPTER_TENSORS_FILE
from fungalzsl.tensorfile import load_tensors, save_tensors

ADAPTER_METHODS = ("tip", "probe", "prototype", "anchored")
FORMAT = "fungalzsl-adapter-v1"
_TENSORS = {
    "tip": ("keys", "key_labels"),
    "probe": ("weight", "bias"),
    "prototype": ("prototypes",),
    "anchored": ("prototypes",),
}


@dataclass
class Adapter:
    """One fitted adapter over ``classes`` (in the order its tensors index)."""

    method: str
    classes: list[str]
    tensors: dict[str, torch.Tensor]
    params: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    features: str = "embedding"
    views: int = 1

    @property
    def needs_own_inputs(self) -> bool:
        """Whether scoring needs more than the centre-crop embedding (other features or more views)."""
        return self.features != "embedding" or self.views != 1

    def logits(self, x: torch.Tensor, zs_logits: torch.Tensor) -> torch.Tensor:
        """(N, C) adapted logits of (N, D) adapter inputs (its features), given their (N, C) zero-shot logits."""
        t, p = self.tensors, self.params
        if self.method == "tip":
            return m.tip_logits(
                x, zs_logits, t["keys"], t["key_labels"], len(self.classes), p["alpha"], p["beta"]
            )
        if self.method == "probe":
            return m.probe_logits(x, t["weight"], t["bias"])
        return m.prototype_logits(x, t["prototypes"], p["scale"])


def fit_adapter(
    method: str,
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    zs_logits: torch.Tensor,
    logit_scale: float,
    class_embeddings: torch.Tensor | None = None,
    features: str = "embedding",
    views: int = 1,
) -> Adapter:
    """Fit ``method`` on shots ``x`` (N, D) with labels (N,); hyper-parameters chosen on the shots.

    ``x`` are ``features`` under ``views`` (recorded in the adapter); ``class_embeddings`` (C, D), the
    run's class text embeddings, are needed by ``anchored`` only, which refuses backbone features."""
    adapter = _fit(method, x, labels, classes, zs_logits, logit_scale, class_embeddings, features)
    adapter.features, adapter.views = features, views
    return adapter


def _fit(
    method: str,
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    zs_logits: torch.Tensor,
    logit_scale: float,
    class_embeddings: torch.Tensor | None,
    features: str,
) -> Adapter:
    if method not in ADAPTER_METHODS:
        raise fail(f"unknown adapter method {method!r}", f"choose one of: {', '.join(ADAPTER_METHODS)}")
    if method == "anchored" and features == "backbone":
        raise fail(
            "the anchored adapter cannot use backbone features alone: its class text lives in the embedding space",
            "use --features embedding or both, or --method prototype, probe or tip with backbone features",
        )
    x = torch.nn.functional.normalize(x.float(), dim=-1)
    labels = labels.long()
    c = len(classes)
    if method == "tip":
        alpha, beta = m.choose_tip(x, zs_logits, labels, c)
        return Adapter(method, classes, {"keys": x, "key_labels": labels}, {"alpha": alpha, "beta": beta})
    if method == "probe":
        l2 = m.choose_probe_l2(x, labels, c)
        w, b = m.fit_probe(x, labels, c, l2)
        return Adapter(method, classes, {"weight": w, "bias": b}, {"l2": l2})
    if method == "anchored":
        if class_embeddings is None:
            raise ValueError("the anchored adapter needs the class text embeddings")
        anchor = m.anchored_joint_prototypes if features == "both" else m.anchored_prototypes
        protos = anchor(x, labels, c, class_embeddings)
        return Adapter(
            method,
            classes,
            {"prototypes": protos},
            {"scale": float(logit_scale), "text_weight": m.ANCHOR_WEIGHT},
        )
    return Adapter(method, classes, {"prototypes": m.prototypes(x, labels, c)}, {"scale": float(logit_scale)})


def save_adapter(run: Path, adapter: Adapter) -> None:
    """Write the tensors, then ``adapter.json`` (the file that marks the run as adapted) last."""
    save_tensors(run / ADAPTER_TENSORS_FILE, {k: v.contiguous() for k, v in adapter.tensors.items()})
    atomic_write_json(
        run / ADAPTER_FILE,
        {
            "format": FORMAT,
            "method": adapter.method,
            "features": adapter.features,
            "views": adapter.views,
            "classes": adapter.classes,
            "params": adapter.params,
            **adapter.info,
        },
    )


def load_adapter(run: str | Path) -> Adapter | None:
    """The run's adapter, or None when the run is not adapted; a damaged adapter is a one-line error."""
    path = Path(run) / ADAPTER_FILE
    if not path.exists():
        return None
    try:
        spec = json.loads(read_text_file(path, "adapter file"))
    except ValueError as e:
        raise fail(f"{path} is not valid JSON ({e})", "rerun 'fungalzsl adapt'") from None
    method = spec.get("method") if isinstance(spec, dict) else None
    if method not in ADAPTER_METHODS or not isinstance(spec.get("classes"), list):
        raise fail(f"{path} is not a fungalzsl adapter (method {method!r})", "rerun 'fungalzsl adapt'")
    tensors = load_tensors(Path(run) / ADAPTER_TENSORS_FILE, "adapter tensors")
    missing = [k for k in _TENSORS[method] if k not in tensors]
    if missing:
        raise fail(
            f"{Path(run) / ADAPTER_TENSORS_FILE} lacks {', '.join(missing)}", "rerun 'fungalzsl adapt'"
        )
    features, views = spec.get("features", "embedding"), spec.get("views", 1)
    if features not in FEATURES or views not in VIEWS:
        raise fail(f"{path} has features {features!r}, views {views!r}", "rerun 'fungalzsl adapt'")
    info = {
        k: v
        for k, v in spec.items()
        if k not in ("format", "method", "classes", "params", "features", "views")
    }
    params = {k: float(v) for k, v in (spec.get("params") or {}).items()}
    return Adapter(method, [str(c) for c in spec["classes"]], tensors, params, info, features, int(views))
