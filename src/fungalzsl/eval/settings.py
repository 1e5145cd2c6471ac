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
    real: str | None = Field(
        None,
        description="a labelled real-image folder also scored (labels.jsonl or class folders), e.g. "
        "data/real-dev; relative paths are tried from the working directory, then from the repository "
        "the config file is in; skipped with a note when absent",
    )
