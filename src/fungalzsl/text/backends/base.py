"""The one interface every description backend answers: turn a batch of prompts into raw texts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from fungalzsl.text.prompts import Prompt


@dataclass(frozen=True)
class Request:
    """One description to write: the class, the prompt (as sent) and a per-request seed."""

    cls: str
    prompt: Prompt
    system: str
    user: str
    seed: int

    def messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return [*msgs, {"role": "user", "content": self.user}]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings (paper: temperature 0.9). ``None`` means the backend's own default."""

    temperature: float = 0.9
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int = 160
    min_words: int = 10
    max_words: int = 70

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class BackendOptions:
    """Everything a backend may need; each backend reads only its own fields."""

    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0  # first retry delay in seconds; doubles each time, plus jitter
    concurrency: int = 4
    device: str = "auto"
    dtype: str = "auto"
    bank_path: str | None = None
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """Where an OpenAI-compatible server listens by default and which key it wants (the shortcuts in
    ``ENDPOINTS``)."""

    base_url: str | None  # None: the openai client's default (api.openai.com) unless OPENAI_BASE_URL is set
    key_env: str | None  # environment variable holding the key; None: the server needs no key
    key_required: bool


class Backend(ABC):
    """``complete`` returns, per request, the raw text or the exception that request ended with (after the
    backend's own retries), so finished texts in a half-failed batch are still saved."""

    kind: str = ""
    model: str = ""

    @abstractmethod
    def complete(self, requests: list[Request], sampling: Sampling) -> list[str | BaseException]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or GPU memory."""

    def describe(self) -> str:
        return f"{self.kind}:{self.model}"
