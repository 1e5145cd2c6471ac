"""Settings of ``fungalzsl describe`` as one validated object: the ``describe`` section of a config file
(``configs/cpu-default.yaml``), the CLI options, and what ``fungalzsl run`` passes, all meet here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fungalzsl.config import load_section, validate
from fungalzsl.text.backends import BackendOptions, parse_spec
from fungalzsl.text.generate import (
    MAX_PER_CLASS,
    PAPER_CLASSES,
    GenerationReport,
    generate_descriptions,
)


class DescribeSettings(BaseModel):
    """Every knob of description generation; names match the CLI options (with underscores)."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "bank"
    classes: list[str] = Field(default_factory=lambda: list(PAPER_CLASSES))
    per_class: int = Field(100, ge=1, le=MAX_PER_CLASS)
    seed: int = 0
    temperature: float = Field(0.9, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_tokens: int = Field(160, ge=1)
    min_words: int = Field(10, ge=1)
    max_words: int = Field(70, ge=1)
    batch_size: int = Field(8, ge=1)
    mask_class_name: bool = False
    set_name: str | None = None
    prompts: str | None = None
    bank: str | None = None
    near_duplicate: float = Field(0.8, gt=0.0, le=1.0)
    max_resample: int = Field(3, ge=0)
    concurrency: int = Field(4, ge=1)
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = Field(60.0, gt=0.0)
    max_retries: int = Field(5, ge=0)
    retry_backoff: float = Field(1.0, ge=0.0)
    device: str = "auto"
    dtype: str = "auto"
    n_gpu_layers: int = 0

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, spec: str) -> str:
        # Checked with the settings, so 'fungalzsl run --llm nosuch:x' stops before generating images.
        parse_spec(spec)  # raises the one-line FungalError naming the known backends
        return spec

    def backend_options(self) -> BackendOptions:
        return BackendOptions(
            base_url=self.base_url, api_key_env=self.api_key_env, timeout=self.timeout,
            max_retries=self.max_retries, backoff=self.retry_backoff, concurrency=self.concurrency,
            device=self.device, dtype=self.dtype, bank_path=self.bank, n_gpu_layers=self.n_gpu_layers,
        )  # fmt: skip


def load_describe_settings(
    config: str | Path | None, overrides: dict[str, Any] | None = None
) -> DescribeSettings:
    """The ``describe`` section of ``config`` (a path or preset name; None: defaults) with ``overrides``."""
    data = {**load_section(config, "describe"), **(overrides or {})}
    if isinstance(data.get("classes"), str):
        data["classes"] = [c.strip() for c in data["classes"].split(",") if c.strip()]
    return validate(DescribeSettings, data, f"describe settings{f' in {config}' if config else ''}")


def describe_from_settings(
    settings: DescribeSettings | dict[str, Any],
    out: str | Path,
    *,
    progress: bool = False,
    resume: bool = True,
) -> GenerationReport:
    """Run :func:`generate_descriptions` with validated settings (what ``fungalzsl run`` calls)."""
    s = settings if isinstance(settings, DescribeSettings) else load_describe_settings(None, settings)
    return generate_descriptions(
        s.backend, s.classes, s.per_class, out, seed=s.seed, temperature=s.temperature, top_p=s.top_p,
        top_k=s.top_k, max_tokens=s.max_tokens, min_words=s.min_words, max_words=s.max_words,
        batch_size=s.batch_size, mask_class_name=s.mask_class_name, set_name=s.set_name, prompts=s.prompts,
        near_duplicate=s.near_duplicate, max_resample=s.max_resample, options=s.backend_options(),
        progress=progress, resume=resume,
    )  # fmt: skip
