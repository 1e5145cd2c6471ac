"""One registry keyed by strings users type: ``lite``, ``openclip:…``, ``hf:…``; plus run-directory loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.io import read_text_file
from fungalzsl.models.base import TwoTowerModel
from fungalzsl.models.specs import SPEC_HELP, expand_alias
from fungalzsl.rundir import CONFIG_FILE, LORA_ADAPTER_FILE, MODEL_FILE, resolve_run_dir
from fungalzsl.tensorfile import load_tensors, save_tensors

PRETRAINED_WEIGHTS = "pretrained"  # config.json "weights": the spec's own, no model.safetensors


def build_model(spec: str, pretrained: bool = True, **options: Any) -> TwoTowerModel:
    """Build a model from its spec. ``pretrained=False`` builds the architecture only (for reloading runs).

    ``options`` go to the backend (``lite``: ``embed_dim``, ``image_size``)."""
    spec = spec.strip()
    expanded, alias = expand_alias(spec)
    if alias is not None:
        from fungalzsl.models.openclip import OpenClipModel

        return OpenClipModel(
            expanded[len("openclip:") :], pretrained=pretrained, alias=(spec, alias), **options
        )
    if spec == "lite":
        from fungalzsl.models.lite import LiteModel

        return LiteModel(pretrained=pretrained, **options)
    if spec.startswith("openclip:") and len(spec) > len("openclip:"):
        from fungalzsl.models.openclip import OpenClipModel

        return OpenClipModel(spec[len("openclip:") :], pretrained=pretrained, **options)
    if spec.startswith("hf:") and len(spec) > len("hf:"):
        from fungalzsl.models.hf import HFClipModel

        return HFClipModel(spec[len("hf:") :], pretrained=pretrained, **options)
    raise fail(f"unknown model spec '{spec}'", f"use {SPEC_HELP}")


def state_for_saving(model: TwoTowerModel) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors (safetensors refuses channels_last strides); copies only where needed."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(model: TwoTowerModel, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's weights as safetensors, atomically (a crash leaves the old file or none).

    A model with LoRA adapters is saved merged (the plain architecture's names, so every consumer
    loads it as is), and its adapter alone beside it as ``lora_adapter.safetensors``."""
    meta = {"spec": model.spec, **(metadata or {})}
    settings = getattr(model, "adapter_settings", None)
    if settings is None:
        save_tensors(path, state_for_saving(model), metadata=meta)
        return
    from fungalzsl.models import lora

    save_tensors(
        Path(path).parent / LORA_ADAPTER_FILE,
        lora.adapter_state(model),
        {**meta, **lora.adapter_metadata(settings)},
    )
    save_tensors(path, lora.merged_state(model), metadata=meta)


def load_weights(model: TwoTowerModel, path: str | Path) -> None:
    """Load a checkpoint strictly; a checkpoint of another architecture is a one-line error."""
    path = Path(path)
    state = load_tensors(path, "checkpoint")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        detail = (missing or unexpected or shapes)[0]
        raise fail(
            f"{path} does not match model {model.spec} ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} mis-shaped tensors, e.g. {detail})",
            "pass the --model the checkpoint was trained with",
        )
    model.load_state_dict(state, strict=True)


def model_options(config: dict[str, Any]) -> dict[str, Any]:
    """Backend options recorded in a run's config.json."""
    return dict(config.get("model_options") or {})


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[TwoTowerModel, dict[str, Any]]:
    """Rebuild a trained model from a run directory (best weights) and return it with its config dict;
    the output folder of ``fungalzsl run`` stands for its ``run/`` (:func:`fungalzsl.rundir.resolve_run_dir`).

    A run whose config says ``"weights": "pretrained"`` (``fungalzsl baseline``: no fine-tuning) has no
    ``model.safetensors``: its model is the spec's pretrained weights, rebuilt with the recorded seed (the
    random heads of ``lite``) and checked against the recorded ``weights_sha256``."""
    run = resolve_run_dir(run_dir)
    cfg_path = run / CONFIG_FILE
    weights = run / MODEL_FILE
    try:
        config = json.loads(read_text_file(cfg_path, "run config"))
    except ValueError as e:
        raise fail(f"{cfg_path} is not valid JSON ({e})", "restore it from a backup or retrain") from None
    spec = config.get("model") if isinstance(config, dict) else None
    if not isinstance(spec, str):
        raise fail(f"{cfg_path} lacks the 'model' spec", "retrain with 'fungalzsl train'")
    if is_pretrained_run(config) and not weights.is_file():
        return load_pretrained_run(run, spec, config).to(device).eval(), config
    if not weights.is_file():
        raise fail(
            f"{run} has {CONFIG_FILE} but no {MODEL_FILE}: its training has not finished",
            "resume it with the same 'fungalzsl train ... --resume' (or 'fungalzsl run') command",
        )
    model = build_for_reload(spec, run, model_options(config))
    load_weights(model, weights)
    return model.to(device).eval(), config


def is_pretrained_run(config: dict[str, Any]) -> bool:
    """True for a run whose model is its spec's pretrained weights, untouched (``fungalzsl baseline``)."""
    return config.get("weights") == PRETRAINED_WEIGHTS


def build_pretrained(spec: str, options: dict[str, Any], seed: int) -> TwoTowerModel:
    """The spec's pretrained model with the heads it initialises at random drawn from ``seed`` (as
    ``fungalzsl train`` draws them), leaving the caller's random stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, **options)


def weights_fingerprint(model: TwoTowerModel) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): the same weights, the same digest."""
    import hashlib

    digest = hashlib.sha256()
    for name, t in sorted(state_for_saving(model).items()):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_pretrained_run(run: Path, spec: str, config: dict[str, Any]) -> TwoTowerModel:
    """The model of a ``"weights": "pretrained"`` run; weights that rebuild differently here (another
    version of a backend or of its weight files) are a one-line error, not silently other scores."""
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise fail(
            f"{run / CONFIG_FILE} lacks the integer 'seed' of its pretrained weights", "rebuild the run"
        )
    model = build_pretrained(spec, model_options(config), seed)
    expected = config.get("weights_sha256")
    if expected is not None and weights_fingerprint(model) != expected:
        raise fail(
            f"the pretrained weights of {spec} rebuilt here differ from those {run} was built with "
            "(another version of torch, the backend or its weight files?)",
            "rebuild it with 'fungalzsl baseline' on this installation",
        )
    return model


def build_for_reload(spec: str, run: Path, options: dict[str, Any]) -> TwoTowerModel:
    """The architecture of a run, without downloading anything: configs stored in the run are used."""
    if spec.startswith("hf:") and (run / "hf").is_dir():
        from fungalzsl.models.hf import HFClipModel

        model = HFClipModel(str(run / "hf"), pretrained=False)
        model.spec = spec
        return model
    if expand_alias(spec)[0].startswith("openclip:") and (run / "open_clip_config.json").is_file():
        cfg = json.loads((run / "open_clip_config.json").read_text())["model_cfg"]
        return build_model(spec, pretrained=False, model_cfg=cfg)
    return build_model(spec, pretrained=False, **options)


def write_architecture_files(model: TwoTowerModel, run: Path) -> None:
    from fungalzsl.io import atomic_write_bytes

    for name, data in model.architecture_files().items():
        atomic_write_bytes(run / name, data)
