"""The file names of a run directory (docs/architecture.md, "Run directory"), defined once.

Torch-free: the CLI, the ONNX path and the table read run directories without loading a model."""

MODEL_FILE = "model.safetensors"  # the best weights (by validation Recall@1)
CONFIG_FILE = "config.json"  # model spec, classes, descriptions, settings, status
CLASS_EMBEDDINGS_FILE = "class_embeddings.safetensors"  # (C, D) class text embeddings
METRICS_FILE = "metrics.jsonl"  # one record per logged step and per epoch
EVALUATIONS_FILE = "evaluations.jsonl"  # one record per `fungalzsl evaluate` of this run
ADAPTER_FILE = (
    "adapter.safetensors"  # with --adapter lora: the best epoch's LoRA tensors (merged into MODEL_FILE)
)
CATLIP_VOCABULARY_FILE = "catlip_vocabulary.json"  # with --objective catlip
LAST_DIR = "last"  # the last epoch's weights and resume state
LAST_STATE_FILE = "state.json"  # inside LAST_DIR: epoch, step, best, RNG-free resume state
