"""The result type shared by every prediction path (PyTorch, ONNX Runtime, the web page); torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Prediction:
    """The result for one image: the top class and every class's probability, or the reason it failed."""

    path: str
    prediction: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def confidence(self) -> float | None:
        return self.probabilities.get(self.prediction) if self.prediction else None

    def as_row(self, classes: Sequence[str]) -> dict[str, Any]:
        row: dict[str, Any] = {"path": self.path, "prediction": self.prediction or ""}
        for c in classes:
            p = self.probabilities.get(c)
            row[f"p_{c}"] = "" if p is None else round(p, 6)
        row["error"] = self.error or ""
        return row
