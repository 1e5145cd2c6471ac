"""CatLIP-style objective (Mehta et al. 2024): image–text pre-training as classification over the
caption vocabulary, adapted to class descriptions (``objective: catlip``; docs/training.md).

* Vocabulary: lower-cased words of every description, stopwords dropped, lemmatised by the suffix rules
  of :func:`lemma` (no NLTK data needed); a lemma is kept when it occurs in at least ``min_count``
  descriptions (all classes together), so one-off words of a single LLM answer do not become targets.
* Targets: an image of class c gets the soft multi-hot vector t_c[v] = fraction of c's descriptions
  that contain lemma v. It is the union of the class's items weighted by frequency — fixed per class,
  rather than the items of the one description paired with the image that step, so targets carry no
  pairing noise and match the weights used for the zero-shot classifier below.
* Head: a linear layer on the normalised image embedding (scaled by √D so each coordinate is O(1) and
  the head needs no huge weights to produce confident logits), trained with binary cross-entropy; the
  text tower is not used and stays frozen.
* Zero-shot classifier: class c = normalise(Σ_v t_c[v] w_v / Σ_v t_c[v]) from the head's weight rows, so
  cos(image, class) ranks classes by their items' mean logit (biases aside). It is written to
  RUN/class_embeddings.safetensors, which evaluate/predict already use unchanged."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json
from fungalzsl.predict.zeroshot import (
    class_probabilities,
    model_logit_scale,
    save_class_embeddings,
)
from fungalzsl.rundir import CATLIP_VOCABULARY_FILE, CLASS_EMBEDDINGS_FILE
from fungalzsl.tensorfile import load_tensors, save_tensors

VOCAB_FILE = CATLIP_VOCABULARY_FILE
HEAD_FILE = "catlip_head.safetensors"

_STOP_TEXT = """a about above across after again against all along also although among an and any are as at be
    because been before being below between both but by can could did do does doing down during each
    either few for from further had has have having here how however if in into is it its itself just
    like may might more most much must near no nor not now of off often on once only onto or other our
    out over own per quite rather same several she should so some such than that the their them then
    there these they this those through throughout thus to too toward towards under until up upon very
    via was were what when where which while who whose why will with within without would yet you your
    image images shown show shows showing appear appears appearing seen visible"""
STOPWORDS = frozenset(_STOP_TEXT.split())
_IRREGULAR = {
    "hyphae": "hypha",
    "mycelia": "mycelium",
    "spores": "spore",
    "fungi": "fungus",
    "media": "medium",
}
_WORD = re.compile(r"[a-z]+")


def lemma(word: str) -> str:
    """A small rule-based lemmatiser: irregular plurals, then plural and -ed/-ing suffix stripping."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "ches", "shes", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    for suffix in ("ing", "ed"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            stem = w[: -len(suffix)]
            # "branching" → "branch", "spotted" → "spot" (a doubled final consonant is undone)
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsaeiou":
                stem = stem[:-1]
            return stem
    return w


def lemmas(text: str) -> set[str]:
    """The distinct lemmas of a description (stopwords and words under 3 letters dropped)."""
    return {lemma(w) for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS}


def build_vocabulary(
    by_class: dict[str, list[str]], classes: Sequence[str], min_count: int = 2
) -> dict[str, Any]:
    """{"items", "min_count", "doc_freq", "targets"}: items sorted; targets[c] = per-item frequency of
    the item among class c's descriptions (the soft multi-hot target of c's images)."""
    per_desc = {c: [lemmas(t) for t in by_class[c]] for c in classes}
    doc_freq: dict[str, int] = {}
    for sets in per_desc.values():
        for s in sets:
            for w in s:
                doc_freq[w] = doc_freq.get(w, 0) + 1
    items = sorted(w for w, n in doc_freq.items() if n >= min_count)
    if not items:
        raise fail(
            f"no word occurs in {min_count} or more descriptions, so the CatLIP vocabulary is empty",
            "lower catlip_min_count or use a larger description set",
        )
    targets = {}
    for c in classes:
        n = max(1, len(per_desc[c]))
        targets[c] = [sum(w in s for s in per_desc[c]) / n for w in items]
        if not any(targets[c]):
            raise fail(
                f"class '{c}' has no word of the CatLIP vocabulary (min_count {min_count})",
                "lower catlip_min_count or give that class more descriptions",
            )
    return {
        "items": items,
        "min_count": min_count,
        "doc_freq": {w: doc_freq[w] for w in items},
        "targets": targets,
    }


class CatlipObjective(nn.Module):
    """The classification head and per-class targets; ``loss`` replaces the contrastive loss."""

    def __init__(self, vocab: dict[str, Any], classes: Sequence[str], dim: int):
        super().__init__()
        self.vocab, self.classes = vocab, list(classes)
        targets = torch.tensor([vocab["targets"][c] for c in classes], dtype=torch.float32)
        self.register_buffer("targets", targets, persistent=False)
        self.head = nn.Linear(dim, len(vocab["items"]))
        self.scale = math.sqrt(dim)
        with torch.no_grad():  # logits ~ N(0, 1) at the start, biases at each item's base rate
            self.head.weight.normal_(0.0, 1.0 / math.sqrt(dim))
            p = targets.mean(0).clamp(1e-3, 1 - 1e-3)
            self.head.bias.copy_(torch.log(p / (1 - p)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(image.float() * self.scale)

    def loss(self, image: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        bce = F.binary_cross_entropy_with_logits(self(image), self.targets[labels])
        return {"loss": bce, "loss_image": bce, "loss_text": torch.zeros_like(bce)}

    @torch.no_grad()
    def class_embeddings(self) -> torch.Tensor:
        """(C, D) normalised frequency-weighted means of the head's weight rows, in ``classes`` order."""
        t = self.targets
        return F.normalize((t @ self.head.weight.float()) / t.sum(1, keepdim=True), dim=-1).cpu()

    def save_head(self, run: Path) -> None:
        save_tensors(
            run / HEAD_FILE, {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        )

    def load_head(self, run: Path) -> None:
        state = load_tensors(run / HEAD_FILE, "CatLIP head")
        self.head.load_state_dict({k: v.to(self.head.weight.device) for k, v in state.items()})

    def write(self, run: Path) -> torch.Tensor:
        """RUN/catlip_vocabulary.json and RUN/class_embeddings.safetensors (as write_class_embeddings)."""
        atomic_write_json(run / VOCAB_FILE, self.vocab)
        return save_class_embeddings(
            run / CLASS_EMBEDDINGS_FILE, self.class_embeddings(), self.classes, objective="catlip"
        )


@torch.no_grad()
def catlip_val_score(
    objective: CatlipObjective, model: Any, cache: Any, split: int, labels: Sequence[int], cfg: Any
) -> tuple[float, float]:
    """Validation for the catlip objective: accuracy and mean p(true class) of the head-derived
    classifier on the readable images of ``cache`` (the text tower plays no part)."""
    from fungalzsl.train.evaluate import image_embeddings

    img = image_embeddings(model, cache, split, cfg.eval_batch_size)
    y = torch.tensor(list(labels))[cache.scan()]
    probs = class_probabilities(img, objective.class_embeddings(), model_logit_scale(model))
    return float((probs.argmax(1) == y).float().mean()), float(probs.gather(1, y[:, None]).mean())
