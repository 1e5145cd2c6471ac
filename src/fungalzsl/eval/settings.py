"""The ``evaluate:`` section of a pipeline config: what ``fungalzsl run`` passes to ``evaluate_run``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvaluateSettings(BaseModel):
    """The ``evaluate:`` section used by ``fungalzsl run``."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    baseline: bool = True
    classifier: str = "mean"
    n_boot: int = Field(1000, ge=0)
