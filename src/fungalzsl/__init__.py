"""fungalzsl: zero-shot recognition of fungal growth stages (spore, hyphae, mycelium)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Classifier", "FungalError", "__version__"]

from fungalzsl.errors import FungalError

if TYPE_CHECKING:  # pragma: no cover
    from fungalzsl.predict.classifier import Classifier


def __getattr__(name: str) -> Any:
    # Importing torch costs seconds: only pay for it when the classifier is used.
    if name == "Classifier":
        from fungalzsl.predict.classifier import Classifier

        return Classifier
    raise AttributeError(name)
