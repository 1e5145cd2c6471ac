"""Classify images with a trained run: the Python API behind ``fungalzsl predict`` and the web page.

    from fungalzsl import Classifier
    clf = Classifier.load("runs/default/run")
    for p in clf.predict(["cells.png", "plate/"]):
        print(p.path, p.prediction, p.probabilities)

The class text embeddings are stored in the run directory, so prediction needs no LLM; a new label set
can be given at any time (``Classifier.set_classes``) for zero-shot on labels the run never saw.

A run written by ``fungalzsl adapt`` carries a few-shot adapter (``RUN/adapter.json``,
:mod:`fungalzsl.fewshot.adapter`): it is applied to the zero-shot logits whenever the label set is the
adapter's own (same class names); any other label set is scored zero-shot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fungalzsl.errors import fail
from fungalzsl.predict.inputs import Images, classify
from fungalzsl.predict.result import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from fungalzsl.fewshot.adapter import Adapter


class Classifier:
    """A trained two-tower model plus class embeddings: images in, class probabilities out."""

    def __init__(
        self,
        model: Any,
        classes: Sequence[str],
        class_embeddings: torch.Tensor,
        logit_scale: float,
        run_dir: Path | None = None,
        config: dict[str, Any] | None = None,
        adapter: Adapter | None = None,
    ):
        if class_embeddings.shape[0] != len(classes):
            raise fail(
                f"{len(classes)} class names but {class_embeddings.shape[0]} class embeddings",
                "the run directory is inconsistent: re-run 'fungalzsl train'",
            )
        self.model = model.eval()
        self.classes = list(classes)
        # Kept as stored: the rule normalises when it scores, so evaluation, training and this score the
        # very same tensor (normalising twice moves the last bit).
        self.class_embeddings = class_embeddings.float()
        self.logit_scale = float(logit_scale)
        self.run_dir = run_dir
        self.config = config or {}
        # The adapter's tensors index its own classes: it applies only to that label set.
        self.adapter = adapter if adapter is not None and adapter.classes == self.classes else None

    @classmethod
    def load(cls, run_dir: str | Path, classes: str | Path | None = None, device: str = "cpu") -> Classifier:
        """Load a run directory written by ``fungalzsl train``, or the output folder of ``fungalzsl run``
        (its ``run/``), optionally with a new description set."""
        from fungalzsl.fewshot.adapter import load_adapter
        from fungalzsl.models import load_run
        from fungalzsl.predict.zeroshot import load_class_embeddings, model_logit_scale
        from fungalzsl.rundir import CLASS_EMBEDDINGS_FILE, resolve_run_dir

        run_dir = resolve_run_dir(run_dir, "Classifier.load")
        model, config = load_run(run_dir)
        model = model.to(device)
        adapter = load_adapter(run_dir)
        if classes is not None and adapter is not None:
            raise fail(
                f"{run_dir} is adapted to its own classes ({', '.join(adapter.classes)}) with few-shot images",
                "predict with --classes from the run it was adapted from (config.json 'adapted_from')",
            )
        if classes is not None:
            names, emb = label_set(model, classes)
        else:
            stored = load_class_embeddings(run_dir / CLASS_EMBEDDINGS_FILE, config.get("classes"))
            if stored is None:
                raise fail(
                    f"{run_dir} has no class_embeddings.safetensors",
                    "pass --classes FILE.jsonl with descriptions",
                )
            names, emb = stored
        return cls(
            model, names, emb, model_logit_scale(model), run_dir=run_dir, config=config, adapter=adapter
        )

    def set_classes(self, descriptions: str | Path | dict[str, list[str]]) -> None:
        """Replace the label set: a descriptions JSONL file or {class: [descriptions...]}."""
        self.classes, emb = label_set(self.model, descriptions)
        self.class_embeddings = emb.float()
        if self.adapter is not None and self.adapter.classes != self.classes:
            self.adapter = None

    def with_label_set(self, classes: Sequence[str], class_embeddings: torch.Tensor) -> Classifier:
        """A classifier sharing this one's model but scoring another label set (no copy of the weights)."""
        return Classifier(
            self.model, classes, class_embeddings, self.logit_scale, self.run_dir, self.config, self.adapter
        )

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C) class probabilities for a batch of preprocessed images.

        An adapter fitted on backbone features or on 8 views gets them computed here (8 views: 8
        forward passes per image); otherwise one forward pass gives the embedding both use."""
        device = self.class_embeddings.device
        x = batch.to(next(self.model.parameters()).device)
        if self.adapter is None or not self.adapter.needs_own_inputs:
            return self.scores(self.model.encode_image(x).float().to(device)).softmax(dim=-1)
        from fungalzsl.fewshot.features import adapter_inputs

        emb, inputs = adapter_inputs(self.model, x, self.adapter.features, self.adapter.views)
        return self.scores(emb.to(device), inputs.to(device)).softmax(dim=-1)

    def scores(self, emb: torch.Tensor, adapter_inputs: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) logits of (N, D) centre-crop image embeddings: zero-shot, then the adapter when there is
        one, on ``adapter_inputs`` (its features and views; needed when they are not ``emb``)."""
        from fungalzsl.predict.zeroshot import class_logits

        logits = class_logits(emb, self.class_embeddings, self.logit_scale)
        if self.adapter is None:
            return logits
        if adapter_inputs is None:
            if self.adapter.needs_own_inputs:
                raise ValueError("this adapter scores its own features: pass adapter_inputs")
            adapter_inputs = emb
        return self.adapter.logits(adapter_inputs, logits)

    def predict(self, images: Images, batch_size: int = 32) -> list[Prediction]:
        """Classify files, folders, glob patterns or PIL images; unreadable inputs get an ``error``."""
        return classify(
            images,
            self.model.preprocess,
            lambda batch: self.probabilities(torch.stack(batch)).cpu(),
            self.classes,
            batch_size,
        )


def label_set(model: Any, descriptions: str | Path | dict[str, list[str]]) -> tuple[list[str], torch.Tensor]:
    """Class names and their embeddings from a descriptions file or a {class: [texts]} mapping."""
    from fungalzsl.predict.zeroshot import class_embeddings
    from fungalzsl.text.records import load_description_set

    by_class = (
        load_description_set(descriptions).by_class if isinstance(descriptions, (str, Path)) else descriptions
    )
    if not by_class or not all(by_class.values()):
        raise fail(
            "the class list is empty or a class has no descriptions",
            "give each class at least one description",
        )
    names = list(by_class)
    return names, class_embeddings(model, by_class, names)
