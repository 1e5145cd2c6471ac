"""The file names of a run directory (docs/architecture.md, "Run directory"), defined once, and
:func:`resolve_run_dir`: the one rule for which folders a command that needs a run accepts.

Torch-free: the CLI, the ONNX path and the table read run directories without loading a model."""

from __future__ import annotations

from pathlib import Path

from fungalzsl.errors import fail

MODEL_FILE = "model.safetensors"  # the best weights (by validation Recall@1)
CONFIG_FILE = "config.json"  # model spec, classes, descriptions, settings, status
CLASS_EMBEDDINGS_FILE = "class_embeddings.safetensors"  # (C, D) class text embeddings
METRICS_FILE = "metrics.jsonl"  # one record per logged step and per epoch
EVALUATIONS_FILE = "evaluations.jsonl"  # one record per `fungalzsl evaluate` of this run
LORA_ADAPTER_FILE = (
    "lora_adapter.safetensors"  # with --adapter lora: the best epoch's LoRA tensors (merged into MODEL_FILE)
)
CATLIP_VOCABULARY_FILE = "catlip_vocabulary.json"  # with --objective catlip
LAST_DIR = "last"  # the last epoch's weights and resume state
LAST_STATE_FILE = "state.json"  # inside LAST_DIR: epoch, step, best, RNG-free resume state
ADAPTER_FILE = "adapter.json"  # with `fungalzsl adapt`: the few-shot adapter's method, classes, params
ADAPTER_TENSORS_FILE = "adapter.safetensors"  # its cache / probe weights / prototypes

# Folders a user may pass where a run is expected, recognised by what they hold.
PIPELINE_RUN_DIR = "run"  # OUT/run: the training run inside the output folder of `fungalzsl run`
PIPELINE_STATE_FILE = "pipeline.json"  # OUT/pipeline.json: the stage cache of `fungalzsl run`
EXPORT_ENCODER_FILE = "image_encoder.onnx"  # `fungalzsl export`: pixels -> embedding
EXPORT_SPEC_FILE = "classifier.json"  # `fungalzsl export`: classes, class embeddings, preprocessing

_EXPECTED = "expected a run from `fungalzsl train` or an output folder of `fungalzsl run`"


def resolve_run_dir(path: str | Path, command: str = "this") -> Path:
    """The training run a user means by ``path``: the folder itself when ``fungalzsl train`` wrote it,
    or its ``run/`` when it is the output folder of ``fungalzsl run``.

    Every command that takes a run (predict, serve, export, evaluate, compare, table) and
    ``Classifier.load``/``load_run`` resolve through here, so they accept the same folders. Any other
    path is a one-line error naming what was found there and what is expected; ``command`` names the
    command in it ("serve needs a training run")."""
    p = Path(path)
    if (p / CONFIG_FILE).is_file():
        return p
    if (p / PIPELINE_RUN_DIR / CONFIG_FILE).is_file():
        return p / PIPELINE_RUN_DIR
    raise fail(_not_a_run(p, command))


def _not_a_run(p: Path, command: str) -> str:
    """What ``p`` is, and what would have worked instead: one line."""
    needs = f"{command} needs a training run"
    if not p.exists():
        return f"{p} does not exist: {_EXPECTED}"
    if not p.is_dir():
        return f"{p} is a file, not a folder: {_EXPECTED}"
    if (p / EXPORT_SPEC_FILE).is_file() and (p / EXPORT_ENCODER_FILE).is_file():
        return (
            f"{p} is an ONNX export folder ({EXPORT_SPEC_FILE} + {EXPORT_ENCODER_FILE}): {needs}; "
            f"use `fungalzsl predict {p} IMAGES...` to classify with it, or pass the run it was exported from"
        )
    if (p / PIPELINE_STATE_FILE).is_file():
        return (
            f"{p} is an output folder of `fungalzsl run` whose training has not finished "
            f"({p / PIPELINE_RUN_DIR} has no {CONFIG_FILE}): run `fungalzsl run --out {p}` again to finish it"
        )
    if (p / "metrics.json").is_file():
        return f"{p} is an evaluation folder (metrics.json): {needs}; pass the run that was evaluated"
    if (p / "dataset.json").is_file():
        return f"{p} is a dataset folder (dataset.json): {needs}; train one with `fungalzsl train --data {p} ...`"
    return f"{p} has no {CONFIG_FILE}: {_EXPECTED}"


def best_epoch(config: dict) -> int | None:
    """config.json's ``best_epoch`` counted from 1, as the console counts. Runs written before
    ``"epoch_base": 1`` was recorded counted from 0."""
    epoch = config.get("best_epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    return epoch if config.get("epoch_base") == 1 else epoch + 1
