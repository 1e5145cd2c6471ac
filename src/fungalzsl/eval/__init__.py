"""Zero-shot evaluation: classifiers built from text, metrics, figures, reports, and the description-set
comparison. It scores models on data that exists; the protocols that also train or generate
(leave-one-class-out, shift robustness) live in :mod:`fungalzsl.pipeline.protocols`, so ``eval``
imports neither ``train``, ``synth`` nor the pipeline. Imports are lazy so that ``import fungalzsl.eval``
stays cheap for the CLI."""

from __future__ import annotations

from typing import Any

from fungalzsl.eval.methods import DEFAULT_TEMPLATE, METHODS

__all__ = ["DEFAULT_TEMPLATE", "METHODS", "compare_sets", "evaluate_run"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_run":
        from fungalzsl.eval.evaluate import evaluate_run

        return evaluate_run
    if name == "compare_sets":
        from fungalzsl.eval.compare import compare_sets

        return compare_sets
    raise AttributeError(name)
