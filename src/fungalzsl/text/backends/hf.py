"""``hf:ID_OR_DIR``: a local instruction-tuned causal LM through transformers — chat template, left-padded
batched sampling, device and dtype chosen for the machine. Offline-friendly: a ``save_pretrained`` directory
or a model already in the Hugging Face cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.text.backends.base import Backend, BackendOptions, Request, Sampling


def resolve_device(name: str) -> str:
    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise fail(f"--device {name} asked for, but no CUDA GPU is visible", "use --device cpu or auto")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str) -> Any:
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name != "auto":
        if name not in table:
            raise fail(
                f"--dtype {name} is not one of {', '.join(table)}", "use auto, float32, bfloat16 or float16"
            )
        return table[name]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU half precision is slow and often unsupported


class HFBackend(Backend):
    kind = "hf"

    def __init__(self, model_id: str, options: BackendOptions) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model_id
        local = Path(model_id).expanduser()
        if model_id.startswith(("/", ".", "~")) and not local.is_dir():
            raise fail(
                f"model directory {local} does not exist", "give a directory saved with save_pretrained"
            )
        self.device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_id)
            self._lm = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise fail(
                f"cannot load the Hugging Face model '{model_id}' ({str(e).splitlines()[0][:160]})",
                "give a local save_pretrained directory or a model id already in your HF cache",
            ) from None
        # Decoder-only models must be padded on the left, or batched answers continue from padding.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._torch = torch

    def _chat(self, r: Request) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None) is None:
            # A base model: plain text prompt; the clean-up strips any echo.
            return f"{r.system}\n\n{r.user}\n\n".lstrip()
        try:
            return tok.apply_chat_template(r.messages(), tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates (e.g. Gemma) refuse a system role: fold it into the user turn
            msgs = [{"role": "user", "content": f"{r.system}\n\n{r.user}".strip()}]
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def complete(self, requests: list[Request], sampling: Sampling) -> list[str | BaseException]:
        torch = self._torch
        prompts = [self._chat(r) for r in requests]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        gen: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            gen.update(do_sample=True, temperature=sampling.temperature)
            if sampling.top_p is not None:
                gen["top_p"] = sampling.top_p
            gen["top_k"] = sampling.top_k if sampling.top_k is not None else 0  # 0: no top-k cut unless asked
        else:
            gen["do_sample"] = False
        # One seed per batch, derived from the first request: reruns of a batch sample the same tokens.
        torch.manual_seed(requests[0].seed)
        try:
            with torch.inference_mode():
                out = self._lm.generate(**enc, **gen)
        except torch.cuda.OutOfMemoryError:
            raise fail(
                f"out of GPU memory generating {len(requests)} answers at once", "lower --batch-size"
            ) from None
        new = out[:, enc["input_ids"].shape[1] :]
        return list(self.tokenizer.batch_decode(new, skip_special_tokens=True))

    def close(self) -> None:
        del self._lm
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()
