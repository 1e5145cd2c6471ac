"""One text-encoder pass per distinct text and text tower, for a whole evaluation.

An evaluation embeds the same descriptions again and again: the fine-tuned model's retrieval, the
control classifiers, the start model's class embeddings and its retrieval. Profiled on 60 images this
was ~70% of ``evaluate``. :class:`TextStore` remembers every embedded text per *text tower*, and
:func:`cached_text` wraps a model so its ``encode_text`` asks the store first.

What is keyed, and why it is safe:

* a backend whose text tower can be cut above its whole backbone (``cache_split("text", all) ==
  all``, e.g. ``lite``'s MiniLM under a trained projection) stores the backbone's output, keyed by a
  SHA-256 of the backbone's tensors, the model class, its tokenizer and token limit. The fine-tuned
  run and the model it started from share the entry when the backbone stayed frozen (cpu-default),
  and never when it trained: the weights differ. The cheap projection runs per call, on the model's
  own head.
* any other model stores its ``encode_text`` output under the model object itself, so one model's
  classifiers and retrieval share texts and two models never do.

Texts are encoded in the order first asked for, in batches of the caller's size, so a model whose text
embedding does not depend on its batch-mates gives the very numbers it gave without the store."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch


class TextStore:
    """Embedded texts per text-tower key; ``encoded`` counts the texts that went through an encoder."""

    def __init__(self) -> None:
        self.rows: dict[Any, dict[str, torch.Tensor]] = {}
        self.encoded = 0


def tensor_digest(modules: Sequence[torch.nn.Module]) -> str:
    """SHA-256 of the modules' tensors (names, shapes, bytes): equal exactly when the weights are."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _backbone_split(model: Any) -> int:
    """The split above the whole frozen text backbone when the backend can run it separately, else 0."""
    groups = getattr(model, "layer_groups", None)
    trunk = getattr(type(model), "text_trunk", None)
    if groups is None or trunk is None or getattr(trunk, "__isabstract__", False):
        return 0
    from fungalzsl.models.base import TwoTowerModel

    if trunk is TwoTowerModel.text_trunk:
        return 0
    n = len(groups()["text"])
    return n if n and model.cache_split("text", n) == n else 0


def tower_key(model: Any) -> tuple[Any, int]:
    """(store key, backbone split) of ``model``'s text tower; split 0: whole ``encode_text`` outputs."""
    split = _backbone_split(model)
    if not split:
        return ("model", id(model)), 0
    tok = getattr(model, "tokenizer", None)
    tokenizer = (
        type(tok).__name__,
        getattr(tok, "name_or_path", None),
        len(tok) if hasattr(tok, "__len__") else getattr(tok, "vocab_size", None),  # open_clip's has no len
    )
    digest = tensor_digest(model.layer_groups()["text"])
    return ("backbone", type(model).__name__, tokenizer, getattr(model, "max_tokens", None), digest), split


class CachedTextModel:
    """``model`` with ``encode_text`` answered from a :class:`TextStore`; everything else is the model's."""

    def __init__(self, model: Any, store: TextStore):
        self._model, self._store = model, store
        self._key, self._split = tower_key(model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def eval(self) -> CachedTextModel:
        self._model.eval()
        return self

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        rows = self._store.rows.setdefault(self._key, {})
        missing = list(dict.fromkeys(t for t in texts if t not in rows))
        if missing:
            self._store.encoded += len(missing)
            out = self._model.text_trunk(missing, self._split) if self._split else None
            if self._split and not (isinstance(out, torch.Tensor) and len(out) == len(missing)):
                # a backbone output that is not one row per text: keep whole embeddings instead
                self._key, self._split = ("model", id(self._model)), 0
                return self.encode_text(texts)
            if out is None:
                out = self._model.encode_text(missing)
            for t, row in zip(missing, out.float().cpu()):
                rows[t] = row
        stacked = torch.stack([rows[t] for t in texts])
        if not self._split:
            return stacked
        device = next(self._model.parameters()).device
        return self._model.text_head(stacked.to(device), self._split)


def cached_text(model: Any, store: TextStore | None) -> Any:
    """``model`` answering ``encode_text`` from ``store`` (``None``: the model itself, uncached)."""
    return model if store is None else CachedTextModel(model, store)
