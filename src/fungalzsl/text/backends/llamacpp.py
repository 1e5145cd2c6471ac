"""``llamacpp:/path/model.gguf``: a GGUF model in-process via llama-cpp-python (optional extra).

Imported lazily so that the package works without it; the error says how to install it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.text.backends.base import Backend, BackendOptions, Request, Sampling


class LlamaCppBackend(Backend):
    kind = "llamacpp"

    def __init__(self, model_path: str, options: BackendOptions) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise fail(
                "the llamacpp backend needs llama-cpp-python", "pip install 'fungalzsl[llamacpp]'"
            ) from None
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise fail(f"GGUF file {path} does not exist", "give the path to a .gguf model file")
        self.model = path.name
        try:
            self._llm = Llama(
                model_path=str(path), n_ctx=options.n_ctx, n_gpu_layers=options.n_gpu_layers, verbose=False
            )
        except (ValueError, RuntimeError) as e:
            raise fail(
                f"llama.cpp cannot load {path} ({str(e)[:160]})", "check that it is a valid GGUF file"
            ) from None

    def complete(self, requests: list[Request], sampling: Sampling) -> list[str | BaseException]:
        # llama.cpp runs one sequence at a time in-process; the batch is a loop, each with its own seed.
        out: list[str | BaseException] = []
        for r in requests:
            kw: dict[str, Any] = {
                "messages": r.messages(),
                "temperature": sampling.temperature,
                "max_tokens": sampling.max_tokens,
                "seed": r.seed,
            }
            if sampling.top_p is not None:
                kw["top_p"] = sampling.top_p
            if sampling.top_k is not None:
                kw["top_k"] = sampling.top_k
            try:
                resp = self._llm.create_chat_completion(**kw)
                out.append(resp["choices"][0]["message"].get("content") or "")
            except Exception as e:  # returned: the answers before it are still saved
                out.append(e)
        return out

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if close:
            close()
