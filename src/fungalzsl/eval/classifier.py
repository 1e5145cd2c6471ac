"""Zero-shot classifiers built from text: the ways of turning class names and descriptions into scores.

- ``mean``: a class is the normalised mean of its descriptions' normalised embeddings (CuPL ensemble;
  the same rule as training's validation and ``fungalzsl predict``, via ``predict.zeroshot.class_embeddings``).
- ``sim-mean``: the mean of the image's similarities to each description (Menon & Vondrick, 2023).
- ``max``: the best-matching single description.
- ``template``: the class name in a plain template ("a photo of a {class}.") — the no-LLM baseline.
- ``waffle``: the class name followed by random words / random characters (WaffleCLIP, Roth et al.
  2023): the control that asks whether LLM descriptions help beyond ensembling noise around a name.
- ``chils``: predict over sub-classes from a hierarchy file, map to the parent, with CHiLS' reweighting
  (Novack et al., 2023): sub-class probability times parent probability.
- ``attributes`` and ``blend`` (eval.attributes): scores through visible-attribute prompts, alone or
  blended with ``mean``.

Every classifier returns logits; probabilities are softmax(logits), with the model's temperature."""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fungalzsl.errors import fail
from fungalzsl.eval.attributes import (
    ATTRIBUTE_PROMPTS,
    BLEND_WEIGHT,
    BlendClassifier,
    attribute_logits,
    attribute_parts,
    check_blend_weight,
)
from fungalzsl.eval.methods import DEFAULT_TEMPLATE, METHODS
from fungalzsl.io import read_text_file
from fungalzsl.predict.embed import embed_texts
from fungalzsl.predict.zeroshot import class_embeddings, class_logits, model_logit_scale

# WaffleCLIP draws its random words from a general vocabulary; a fixed neutral list keeps the control
# offline and reproducible. None of these words says anything about fungi, colour or shape.
_WAFFLE_WORDS = [
    "table",
    "window",
    "river",
    "paper",
    "engine",
    "garden",
    "ticket",
    "pencil",
    "harbor",
    "blanket",
    "market",
    "ladder",
    "bottle",
    "violin",
    "kitchen",
    "castle",
    "mirror",
    "wallet",
    "tunnel",
    "helmet",
    "saddle",
    "anchor",
    "basket",
    "bridge",
    "candle",
    "carpet",
    "chimney",
    "compass",
    "desert",
    "factory",
    "feather",
    "fountain",
    "gadget",
    "hammer",
    "island",
    "jacket",
    "kettle",
    "lantern",
    "meadow",
    "needle",
    "orchard",
    "pillow",
    "pocket",
    "puzzle",
    "rocket",
    "shovel",
    "statue",
    "stove",
    "suitcase",
    "teapot",
    "thimble",
    "tractor",
    "trumpet",
    "umbrella",
    "village",
    "wagon",
    "whistle",
    "zipper",
    "almond",
    "button",
    "cactus",
    "dolphin",
    "elbow",
    "falcon",
    "glacier",
    "hinge",
    "igloo",
    "jigsaw",
    "kayak",
    "lemon",
    "magnet",
    "napkin",
    "oyster",
    "parcel",
    "quartz",
    "raft",
    "scarf",
    "tripod",
    "valley",
    "walnut",
    "yacht",
]


@dataclass
class ZeroShotClassifier:
    """Scores images against text prototypes; ``owner[j]`` is the class of prototype ``j``.

    ``reduce`` says how a class's prototypes combine: one prototype per class ("single"), the mean or
    the max of similarities; ``chils`` adds parent prototypes for the reweighting."""

    classes: list[str]
    method: str
    prototypes: torch.Tensor
    owner: torch.Tensor
    logit_scale: float
    reduce: str = "single"
    parent_prototypes: torch.Tensor | None = None
    prototype_names: list[str] = field(default_factory=list)
    attribute_weights: torch.Tensor | None = None  # (C, A), reduce == "attributes" (eval.attributes)

    def logits(self, image_emb: torch.Tensor) -> torch.Tensor:
        """(N, C) class scores; for ``chils`` these are log-probabilities of the reweighted scores."""
        c = len(self.classes)
        if self.reduce == "single":  # one prototype per class: the zero-shot rule itself
            out = torch.empty(image_emb.shape[0], c)
            out[:, self.owner] = class_logits(image_emb, self.prototypes, self.logit_scale)
            return out
        if self.reduce == "attributes":
            assert self.attribute_weights is not None
            return attribute_logits(image_emb, self.prototypes, self.attribute_weights, self.logit_scale)
        x = F.normalize(image_emb.float(), dim=-1)
        sims = x @ F.normalize(self.prototypes.float(), dim=-1).T  # (N, P)
        if self.method == "chils":
            assert self.parent_prototypes is not None
            parent = (self.logit_scale * x @ F.normalize(self.parent_prototypes.float(), dim=-1).T).softmax(
                -1
            )
            sub = (self.logit_scale * sims).softmax(-1)
            score = sub * parent[:, self.owner]  # CHiLS: p(sub | x) * p(parent(sub) | x)
            best = torch.full((x.shape[0], c), 0.0).scatter_reduce(
                1, self.owner.expand(x.shape[0], -1), score, reduce="amax", include_self=True
            )
            # Normalise the best reweighted sub-class score per parent: argmax is CHiLS' prediction,
            # and the row is a distribution we can calibrate and plot like the other methods.
            best = best / best.sum(-1, keepdim=True).clamp_min(1e-30)
            return best.clamp_min(1e-30).log()
        idx = self.owner.expand(x.shape[0], -1)
        if self.reduce == "mean":
            total = torch.zeros(x.shape[0], c).scatter_add(1, idx, sims)
            count = torch.bincount(self.owner, minlength=c).clamp_min(1).float()
            return self.logit_scale * total / count
        if self.reduce == "max":
            best = torch.full((x.shape[0], c), -2.0).scatter_reduce(1, idx, sims, reduce="amax")
            return self.logit_scale * best
        raise ValueError(f"unknown reduce {self.reduce!r}")

    def probabilities(self, image_emb: torch.Tensor) -> torch.Tensor:
        return self.logits(image_emb).softmax(dim=-1)


@dataclass
class AdaptedClassifier:
    """The stored-embeddings classifier of a run written by ``fungalzsl adapt``, with its few-shot
    adapter on top (:mod:`fungalzsl.fewshot.adapter`): ``base`` scores the adapter's classes in its
    order, the adapter turns those logits into its own, and the data's ``classes`` are picked out.

    An adapter fitted on backbone features or 8 views scores ``inputs`` (one row per image of the
    embeddings it is given, :mod:`fungalzsl.fewshot.features`), which the caller sets for each split."""

    base: ZeroShotClassifier
    adapter: Any
    classes: list[str]
    inputs: torch.Tensor | None = None

    @property
    def method(self) -> str:
        return f"{self.base.method}+{self.adapter.method}"

    @property
    def logit_scale(self) -> float:
        return self.base.logit_scale

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:
        self.base.logit_scale = value

    def logits(self, image_emb: torch.Tensor) -> torch.Tensor:
        x = image_emb
        if self.adapter.needs_own_inputs:
            if self.inputs is None or len(self.inputs) != len(image_emb):
                raise ValueError("this adapter scores its own features: set inputs for these images")
            x = self.inputs
        full = self.adapter.logits(x, self.base.logits(image_emb))
        return full[:, [self.adapter.classes.index(c) for c in self.classes]]

    def probabilities(self, image_emb: torch.Tensor) -> torch.Tensor:
        return self.logits(image_emb).softmax(dim=-1)


def adapted_classifier(
    adapter: Any, stored: tuple[list[str], torch.Tensor], classes: Sequence[str], logit_scale: float
) -> AdaptedClassifier:
    """An :class:`AdaptedClassifier` over the data's ``classes`` from the run's stored class embeddings."""
    names, emb = stored
    missing = [c for c in [*adapter.classes, *classes] if c not in names or c not in adapter.classes]
    if missing:
        raise fail(
            f"the run's adapter and stored class embeddings do not cover class(es): {', '.join(sorted(set(missing)))}",
            "evaluate on data with the adapted classes only, or rerun 'fungalzsl adapt'",
        )
    order = adapter.classes
    base = ZeroShotClassifier(
        order, "mean", emb[[names.index(c) for c in order]], torch.arange(len(order)), logit_scale
    )
    return AdaptedClassifier(base, adapter, list(classes))


def waffle_descriptors(count: int = 16, seed: int = 0) -> list[str]:
    """WaffleCLIP's random descriptors: half random word pairs, half random character strings."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:
            out.append(f"{rng.choice(_WAFFLE_WORDS)} {rng.choice(_WAFFLE_WORDS)}")
        else:
            out.append("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10))))
    return out


def load_hierarchy(path: str | Path) -> dict[str, list[str]]:
    """Read a CHiLS hierarchy file: YAML mapping parent class → list of sub-class names.

    A bare name (``fungi``) picks a hierarchy shipped in ``fungalzsl/eval/hierarchies/``."""
    from importlib import resources

    import yaml

    path = Path(path)
    shipped = resources.files("fungalzsl") / "eval" / "hierarchies" / f"{path}.yaml"
    if not path.is_file() and path.suffix == "" and shipped.is_file():
        path = Path(str(shipped))
    if not path.is_file():
        raise fail(f"hierarchy file {path} does not exist", "give a YAML file: parent: [sub-class, ...]")
    try:
        data = yaml.safe_load(read_text_file(path, "hierarchy file"))
    except yaml.YAMLError as e:
        raise fail(f"{path} is not valid YAML ({str(e).splitlines()[0]})", "fix the file") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v)
        for k, v in data.items()
    ):
        raise fail(f"{path} must map each parent class to a list of sub-class names", "e.g. spore: [conidia]")
    return {k: list(v) for k, v in data.items()}


def _need(by_class: dict[str, list[str]] | None, classes: Sequence[str], method: str) -> dict[str, list[str]]:
    if by_class is None:
        raise fail(
            f"classifier '{method}' needs a description set",
            "pass --descriptions FILE.jsonl (or use --classifier template/waffle)",
        )
    missing = [c for c in classes if not by_class.get(c)]
    if missing:
        raise fail(
            f"the description set has no descriptions for class(es): {', '.join(missing)}",
            "pass a set covering every class in the data",
        )
    return by_class


def build_classifier(
    model: Any,
    classes: Sequence[str],
    method: str = "mean",
    by_class: dict[str, list[str]] | None = None,
    *,
    logit_scale: float | None = None,
    template: str = DEFAULT_TEMPLATE,
    waffle_count: int = 16,
    seed: int = 0,
    hierarchy: dict[str, list[str]] | None = None,
    class_emb: torch.Tensor | None = None,
    prompts: Sequence[str] = ATTRIBUTE_PROMPTS,
    blend_weight: float = BLEND_WEIGHT,
) -> Any:
    """Build the ``method`` classifier over ``classes`` with ``model``'s text tower.

    ``class_emb`` (C, D), when given with ``method='mean'``, is used as is (a run's stored class
    embeddings) so evaluation needs no text model. ``logit_scale`` defaults to the model's. ``prompts``
    are the attribute prompts of ``method='attributes'`` and ``'blend'``, ``blend_weight`` the blend's
    weight on them (eval.attributes). A :class:`ZeroShotClassifier`, or a ``BlendClassifier``."""
    classes = list(classes)
    if method not in METHODS:
        raise fail(f"unknown classifier '{method}'", f"choose one of: {', '.join(METHODS)}")
    if "{class}" not in template:
        raise fail(f"template {template!r} lacks '{{class}}'", "e.g. 'a photo of a {class}.'")
    if logit_scale is None:
        logit_scale = model_logit_scale(model)
    own = torch.arange(len(classes))
    if method == "mean":
        if class_emb is None:
            class_emb = class_embeddings(model, _need(by_class, classes, method), classes)
        return ZeroShotClassifier(classes, method, class_emb, own, logit_scale)
    if method in ("sim-mean", "max"):
        texts = _need(by_class, classes, method)
        flat = [t for c in classes for t in texts[c]]
        owner = torch.tensor([i for i, c in enumerate(classes) for _ in texts[c]])
        return ZeroShotClassifier(
            classes,
            method,
            embed_texts(model, flat),
            owner,
            logit_scale,
            reduce="mean" if method == "sim-mean" else "max",
        )
    if method == "blend":
        w = check_blend_weight(blend_weight)
        kw: dict[str, Any] = dict(logit_scale=logit_scale, prompts=prompts)
        mean = build_classifier(model, classes, "mean", by_class, class_emb=class_emb, **kw)
        return BlendClassifier(mean, build_classifier(model, classes, "attributes", by_class, **kw), w)
    if method == "attributes":
        attr_emb, weights = attribute_parts(model, classes, _need(by_class, classes, method), prompts)
        return ZeroShotClassifier(classes, method, attr_emb, torch.arange(len(prompts)), logit_scale,
                                  reduce="attributes", attribute_weights=weights, prototype_names=list(prompts))  # fmt: skip
    if method == "template":
        emb = embed_texts(model, [template.replace("{class}", c) for c in classes])
        return ZeroShotClassifier(classes, method, emb, own, logit_scale, prototype_names=list(classes))
    if method == "waffle":
        descriptors = waffle_descriptors(waffle_count, seed)
        base = template.rstrip(". ")
        prompts = {c: [f"{base.replace('{class}', c)}, which has {d}." for d in descriptors] for c in classes}
        return ZeroShotClassifier(
            classes, method, class_embeddings(model, prompts, classes), own, logit_scale
        )
    # chils
    if not hierarchy:
        raise fail(
            "classifier 'chils' needs a hierarchy", "pass --hierarchy FILE.yaml (parent: [sub-class, ...])"
        )
    unknown = [p for p in hierarchy if p not in classes]
    if unknown:
        raise fail(
            f"hierarchy parents not among the classes: {', '.join(unknown)}", f"use: {', '.join(classes)}"
        )
    names, owner_l = [], []
    for i, c in enumerate(classes):
        # A parent without listed sub-classes stands for itself, so every class stays predictable.
        for s in hierarchy.get(c) or [c]:
            names.append(s)
            owner_l.append(i)
    sub_emb = embed_texts(
        model,
        [
            f"{template.replace('{class}', s).rstrip('. ')}, a type of {classes[o]}."
            for s, o in zip(names, owner_l)
        ],
    )
    if by_class is not None and all(by_class.get(c) for c in classes):
        parent = build_classifier(model, classes, "mean", by_class, logit_scale=logit_scale).prototypes
    else:
        parent = embed_texts(model, [template.replace("{class}", c) for c in classes])
    return ZeroShotClassifier(
        classes,
        method,
        sub_emb,
        torch.tensor(owner_l),
        logit_scale,
        reduce="chils",
        parent_prototypes=parent,
        prototype_names=names,
    )


def fit_logit_scale(clf: ZeroShotClassifier, image_emb: torch.Tensor, labels: Sequence[int]) -> float:
    """Temperature scaling (Guo et al., 2017): the logit scale minimising NLL on held-out labelled images.

    Only the scale changes, so predictions (the argmax) stay the same; only confidence moves. A coarse
    log-spaced grid finds the basin, a golden-section search refines it (NLL is unimodal in the scale)."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    original = clf.logit_scale

    def nll(log_s: float) -> float:
        clf.logit_scale = float(torch.tensor(log_s).exp())
        with torch.no_grad():
            return float(F.cross_entropy(clf.logits(image_emb), y))

    try:
        grid = torch.linspace(float(torch.tensor(0.5).log()), float(torch.tensor(1000.0).log()), 60).tolist()
        best = min(range(len(grid)), key=lambda i: nll(grid[i]))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        ratio = (5**0.5 - 1) / 2
        for _ in range(40):
            a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            if nll(a) < nll(b):
                hi = b
            else:
                lo = a
        return float(torch.tensor((lo + hi) / 2).exp())
    finally:
        clf.logit_scale = original
