"""Backend registry: a spec string a user can type -> a :class:`Backend`.

``bank`` | ``bank:FILE.yaml``            offline knowledge bank (default; no model)
``openai:MODEL``                         OpenAI or any OpenAI-compatible server (``--base-url``/OPENAI_BASE_URL)
``ollama:MODEL`` ``vllm:MODEL``          local servers, base URL preset (override with ``--base-url``)
``llama-server:MODEL`` ``lmstudio:MODEL``
``gemini:MODEL`` ``claude:MODEL``        Google's and Anthropic's OpenAI-compatible endpoints
``hf:ID_OR_DIR``                         a local instruction-tuned model via transformers
``llamacpp:/path/model.gguf``            a GGUF file via llama-cpp-python (``pip install fungalzsl[llamacpp]``)
"""

from __future__ import annotations

from fungalzsl.errors import fail
from fungalzsl.text.backends.base import Backend, BackendOptions, Endpoint, Request, Sampling

# Shortcuts for OpenAI-compatible servers: where they listen by default and which key they want.
ENDPOINTS: dict[str, Endpoint] = {
    "openai": Endpoint(None, "OPENAI_API_KEY", True),
    "ollama": Endpoint("http://localhost:11434/v1", "OLLAMA_API_KEY", False),
    "vllm": Endpoint("http://localhost:8000/v1", "VLLM_API_KEY", False),
    "llama-server": Endpoint("http://localhost:8080/v1", "LLAMA_API_KEY", False),
    "lmstudio": Endpoint("http://localhost:1234/v1", "LMSTUDIO_API_KEY", False),
    "gemini": Endpoint("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY", True),
    "claude": Endpoint("https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY", True),
}
LOCAL_KINDS = ("bank", "hf", "llamacpp")


def parse_spec(spec: str) -> tuple[str, str]:
    """``'ollama:llama3.2'`` -> ``('ollama', 'llama3.2')``; ``'bank'`` -> ``('bank', '')``."""
    spec = (spec or "").strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "anthropic":
        kind = "claude"
    if kind not in ENDPOINTS and kind not in LOCAL_KINDS:
        known = ", ".join([*LOCAL_KINDS, *ENDPOINTS])
        raise fail(f"unknown backend '{spec}'", f"use one of {known}, e.g. --backend ollama:llama3.2")
    if kind != "bank" and not rest:
        raise fail(f"backend '{spec}' needs a model after the colon", f"e.g. --backend {kind}:MODEL")
    return kind, rest


def open_backend(spec: str, options: BackendOptions | None = None) -> Backend:
    """Build the backend for ``spec``; imports heavy libraries only for the backend asked for."""
    options = options or BackendOptions()
    kind, model = parse_spec(spec)
    if kind == "bank":
        from fungalzsl.text.backends.bank_backend import BankBackend

        return BankBackend(model or None, options)
    if kind == "hf":
        from fungalzsl.text.backends.hf import HFBackend

        return HFBackend(model, options)
    if kind == "llamacpp":
        from fungalzsl.text.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, options)
    from fungalzsl.text.backends.openai_chat import OpenAIChatBackend

    return OpenAIChatBackend(kind, model, ENDPOINTS[kind], options)


__all__ = ["ENDPOINTS", "Backend", "BackendOptions", "Request", "Sampling", "open_backend", "parse_spec"]
