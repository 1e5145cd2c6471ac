"""The orchestration of several stages: ``fungalzsl run`` (generate → describe → train → evaluate,
cached and resumable) and the evaluation protocols that train and generate (leave-one-class-out,
shift robustness).

Modules: ``end_to_end`` (``run_pipeline``), ``stages`` (the stage cache in ``OUT/pipeline.json``),
``protocols`` (``leave_one_class_out``, ``shift_robustness``), ``cli`` (the ``run``, ``loco`` and
``shift`` commands). Each stage's own settings live in that stage (``synth.settings``,
``text.settings``, ``train``, ``eval.settings``); this package only wires them together, so nothing in
``eval/``, ``train/`` or ``synth/`` imports it.

Python API::

    from fungalzsl.pipeline import run_pipeline
    metrics = run_pipeline("runs/default", "cpu-default")
"""

from fungalzsl.pipeline.cli import run
from fungalzsl.pipeline.end_to_end import DEFAULT_CONFIG, run_pipeline

__all__ = ["DEFAULT_CONFIG", "run", "run_pipeline"]
