"""``fungalzsl table``: the paper's Table 1 (CLIP model, learning rate, s/it, Recall@1) over runs.

Each argument is a run directory or an evaluation directory. For a run, its evaluations are listed in
RUN/evaluations.jsonl (appended by ``fungalzsl evaluate``); the latest one on the requested split wins,
falling back to RUN/eval/metrics.json. Model, learning rate, trainable-parameter count and peak
memory come from RUN/config.json (``trainable_params``, ``peak_rss_mb``: recorded by the trainer at the
finish and by ``fungalzsl baseline``), seconds per iteration from RUN/metrics.jsonl (the trainer's
per-step timing), else config.json's ``s_per_it``. Runs that lack a key show "–"; a baseline run
(``fungalzsl baseline``: no fine-tuning) is named by its method in the objective column. Each
``--data DIR`` adds a column: the run's latest evaluation on exactly that data set (e.g. data/real-dev
beside the synthetic test split)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fungalzsl.errors import FungalError, fail
from fungalzsl.eval.report import fmt
from fungalzsl.eval.sources import NO_SPLIT
from fungalzsl.io import read_jsonl, read_text_file
from fungalzsl.rundir import CONFIG_FILE, EVALUATIONS_FILE, METRICS_FILE, best_epoch, resolve_run_dir

# Names the trainer (or another tool) may use for the same quantity; the first one present wins.
LR_KEYS = ("lr", "learning_rate")
SEC_PER_IT_KEYS = ("sec_per_it", "s_per_it", "seconds_per_step", "step_seconds", "step_time", "time_per_step")


def _find(d: Any, keys: Sequence[str]) -> Any:
    """Depth-first search of nested dicts for the first of ``keys`` with a scalar value."""
    if isinstance(d, dict):
        for k in keys:
            if k in d and isinstance(d[k], (int, float, str)) and not isinstance(d[k], bool):
                return d[k]
        for v in d.values():
            found = _find(v, keys)
            if found is not None:
                return found
    return None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(read_text_file(path))
    except (OSError, ValueError) as e:
        raise fail(f"cannot read {path} ({e})", "re-run the step that writes it") from None


def _evaluations(run: Path, split: str | None) -> list[dict[str, Any]]:
    """The run's recorded evaluations on ``split`` whose metrics.json still exists, oldest first."""
    index = run / EVALUATIONS_FILE
    if not index.is_file():
        return []
    recs = [r for r in read_jsonl(index) if split is None or r.get("split") == split]
    return [r for r in recs if (Path(r.get("out", "")) / "metrics.json").is_file()]


def latest_evaluation(run: Path, split: str | None, data: str | None = None) -> Path | None:
    """metrics.json of the run's latest evaluation on ``split`` — preferring one on ``data`` (the run's
    own dataset), since a run may also have been scored on other datasets (None if never evaluated)."""
    recs = _evaluations(run, split)
    same = [r for r in recs if data and _same_path(r.get("data"), data)]
    for pool in (same, recs):
        if pool:
            return Path(pool[-1]["out"]) / "metrics.json"
    f = run / "eval" / "metrics.json"
    return f if f.is_file() else None


def evaluation_on(run: Path, split: str | None, data: str | Path) -> Path | None:
    """metrics.json of the run's latest evaluation on exactly the data set ``data`` (None if none), on
    ``split`` or on the whole folder (split None or ``--split none``: how ``fungalzsl run`` scores a
    labelled real set)."""
    recs = [r for r in _evaluations(run, None) if split is None or r.get("split") in (split, *NO_SPLIT)]
    same = [r for r in recs if _same_path(r.get("data"), str(data))]
    return Path(same[-1]["out"]) / "metrics.json" if same else None


def data_labels(datasets: Sequence[str | Path]) -> list[str]:
    """Column names for ``--data`` sets: each folder's name (``real-dev``), the path as given where two
    names would clash."""
    names = [Path(d).name or str(d) for d in datasets]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, datasets)]


def _on_data(run: Path | None, split: str | None, datasets: Sequence[str | Path]) -> dict[str, Any]:
    """label -> Recall@1, CI, n and metrics file of the run's latest evaluation on each data set (None
    where it has none)."""
    out: dict[str, Any] = {}
    for label, data in zip(data_labels(datasets), datasets):
        f = evaluation_on(run, split, data) if run is not None else None
        m = _load_json(f) if f is not None else None
        out[label] = m and {"recall@1": m["recall@1"], "ci95": m.get("ci95", {}).get("recall@1"),
                            "n": m.get("n"), "metrics": str(f)}  # fmt: skip
    return out


def _same_path(a: Any, b: Any) -> bool:
    try:
        return isinstance(a, str) and isinstance(b, str) and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def seconds_per_iteration(records: Iterable[dict[str, Any]]) -> float | None:
    """Median of the trainer's per-step seconds; else wall time per step from step/time stamps."""
    recs = list(records)
    vals = [float(v) for r in recs if (v := _find(r, SEC_PER_IT_KEYS)) is not None and not isinstance(v, str)]
    if vals:
        vals.sort()
        return vals[len(vals) // 2]
    stamped = [
        (r["step"], r["time"])
        for r in recs
        if isinstance(r.get("step"), (int, float)) and isinstance(r.get("time"), (int, float))
    ]
    if len(stamped) >= 2 and stamped[-1][0] > stamped[0][0]:
        return (stamped[-1][1] - stamped[0][1]) / (stamped[-1][0] - stamped[0][0])
    return None


def objective_name(config: dict[str, Any]) -> str | None:
    """How a run was trained: ``catlip``, or the contrastive loss (multi_positive, clip, sigmoid);
    runs from before the option existed were contrastive with their ``loss``."""
    train = config.get("train")
    if not isinstance(train, dict):
        return None
    name = "catlip" if train.get("objective") == "catlip" else str(train.get("loss") or "multi_positive")
    if train.get("adapter") == "lora":
        name += f" + LoRA r{train.get('lora_rank')}"
    return name


def baseline_name(config: dict[str, Any]) -> str | None:
    """``no fine-tuning: tip (64/class)`` for a run of ``fungalzsl baseline``, else None."""
    b = config.get("baseline")
    if not isinstance(b, dict) or not isinstance(b.get("method"), str):
        return None
    counts = sorted(n for n in (b.get("support_per_class") or {}).values() if isinstance(n, int))
    support = ""
    if counts:
        support = f" ({counts[0]}/class)" if counts[0] == counts[-1] else f" ({counts[0]}-{counts[-1]}/class)"
    return f"no fine-tuning: {b['method']}{support}"


def table_row(path: Path, split: str | None = "test", datasets: Sequence[str | Path] = ()) -> dict[str, Any]:
    """One Table 1 row from a run directory, the output folder of ``fungalzsl run`` or an evaluation
    directory; ``datasets`` add the run's latest evaluation on each of those data sets (``on_data``)."""
    path = Path(path)
    if (path / "metrics.json").is_file() and not (path / CONFIG_FILE).is_file():
        metrics_file = path / "metrics.json"
        rd = _load_json(metrics_file).get("model", {}).get("run_dir")
        run = Path(rd) if rd and Path(rd).is_dir() else None
    else:
        try:
            run = resolve_run_dir(path, "table")
        except FungalError as e:
            raise fail(f"{e} (table also takes an evaluation folder: one with metrics.json)") from None
        own_data = _load_json(run / CONFIG_FILE).get("data")
        metrics_file = latest_evaluation(run, split, own_data)
        if metrics_file is None:
            raise fail(
                f"run {run} has no evaluation on split '{split}'",
                f"run 'fungalzsl evaluate {path} --data DIR --out DIR' first",
            )
    m = _load_json(metrics_file)
    config = _load_json(run / CONFIG_FILE) if run is not None else {}
    history = read_jsonl(run / METRICS_FILE) if run is not None and (run / METRICS_FILE).is_file() else []
    model = config.get("model")
    if isinstance(model, dict):
        model = model.get("spec") or model.get("name")
    return {
        "run": str(run or path),
        "model": model or m.get("model", {}).get("spec") or m.get("model", {}).get("source"),
        "learning_rate": _find(config, LR_KEYS),
        "backbone_lr": _find(config, ("backbone_lr",)),
        "sec_per_it": _number(seconds_per_iteration(history), config.get("s_per_it")),
        "recall@1": m["recall@1"],
        "ci95": m.get("ci95", {}).get("recall@1"),
        "baseline_recall@1": (m.get("baseline") or {}).get("recall@1"),
        "n": m.get("n"),
        "split": m.get("split"),
        "descriptions": (m.get("descriptions") or {}).get("name", "stored class embeddings"),
        "objective": baseline_name(config) or objective_name(config),
        "trainable_params": config.get("trainable_params"),
        "peak_rss_mb": config.get("peak_rss_mb"),
        "best_epoch": best_epoch(config),  # counted from 1, also for runs that recorded it from 0
        "epochs_run": config.get("epochs_run"),
        "metrics": str(metrics_file),
        "on_data": _on_data(run, split, datasets),
    }


def build_table(
    paths: Sequence[Path], split: str | None = "test", datasets: Sequence[str | Path] = ()
) -> list[dict[str, Any]]:
    if not paths:
        raise fail("no runs given", "pass one or more run directories")
    return [table_row(p, split, datasets) for p in paths]


def _number(*values: Any) -> float | None:
    """The first value that is a number (not a bool), else None."""
    return next((float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)), None)


def _count(n: Any) -> str:
    """Parameter counts as people quote them: 426.5 K, 26.41 M."""
    if not isinstance(n, (int, float)):
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} K" if n >= 1e3 else str(int(n))


def _mb(v: Any) -> str:
    return f"{v:.0f} MB RSS" if isinstance(v, (int, float)) else "–"


def _lr(v: Any) -> str:
    return f"{v:.0e}" if isinstance(v, float) else fmt(v)


def _epoch(r: dict[str, Any]) -> str:
    """``3 of 5``: the best epoch (from 1) of the epochs run."""
    best, run = r.get("best_epoch"), r.get("epochs_run")
    return fmt(best) + (f" of {run}" if best is not None and run is not None else "")


def _recall(r: dict[str, Any] | None) -> str:
    """``0.821 [0.643, 0.964]`` (Recall@1 with its 95% CI), "–" for no evaluation."""
    if not r:
        return "–"
    ci = r.get("ci95")
    return f"{r['recall@1']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table; each ``--data`` set adds a Recall@1 column (with its n) after the headline's."""
    labels = list(rows[0].get("on_data") or {}) if rows else []
    extra = "".join(f" {label} Recall@1 (n) |" for label in labels)
    head = (
        f"| CLIP model | Learning rate | Iteration rate | Recall@1 [95% CI] |{extra} zero-shot start | n | "
        "best epoch | descriptions | Trainable params | Peak memory | objective |"
    )
    lines = [head, "|" + " --- |" * (11 + len(labels))]
    for r in rows:
        rate = f"{r['sec_per_it']:.2f} s/it" if r["sec_per_it"] is not None else "–"
        lr = _lr(r["learning_rate"])
        if r.get("backbone_lr") not in (None, r["learning_rate"]):
            lr += f" (backbone {_lr(r['backbone_lr'])})"
        cells = ""
        for label in labels:
            on = (r.get("on_data") or {}).get(label)
            cells += f" {_recall(on)}" + (f" ({on['n']})" if on and on.get("n") is not None else "") + " |"
        lines.append(
            f"| {r['model']} | {lr} | {rate} | {_recall(r)} |{cells} "
            f"{fmt(r['baseline_recall@1'])} | {fmt(r['n'])} | {_epoch(r)} | {r['descriptions']} | "
            f"{_count(r.get('trainable_params'))} | {_mb(r.get('peak_rss_mb'))} | {fmt(r.get('objective'))} |"
        )
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    labels = list(rows[0].get("on_data") or {}) if rows else []
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "run",
            "model",
            "learning_rate",
            "sec_per_it",
            "recall@1",
            "ci_low",
            "ci_high",
            "baseline_recall@1",
            "n",
            "split",
            "descriptions",
            "backbone_lr",
            "objective",
            "best_epoch",
            "epochs_run",
            "trainable_params",
            "peak_rss_mb",
            *[f"{label} {k}" for label in labels for k in ("recall@1", "ci_low", "ci_high", "n")],
        ]
    )
    for r in rows:
        ci = r["ci95"] or [None, None]
        on_data = []
        for label in labels:
            on = (r.get("on_data") or {}).get(label) or {}
            on_ci = on.get("ci95") or [None, None]
            on_data += [on.get("recall@1"), on_ci[0], on_ci[1], on.get("n")]
        w.writerow(
            [
                r["run"],
                r["model"],
                r["learning_rate"],
                r["sec_per_it"],
                r["recall@1"],
                ci[0],
                ci[1],
                r["baseline_recall@1"],
                r["n"],
                r["split"],
                r["descriptions"],
                r.get("backbone_lr"),
                r.get("objective"),
                r.get("best_epoch"),
                r.get("epochs_run"),
                r.get("trainable_params"),
                r.get("peak_rss_mb"),
                *on_data,
            ]
        )
    return buf.getvalue()
