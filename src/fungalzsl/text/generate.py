"""``generate_descriptions``: N descriptions per class from any backend, in ⌈N/B⌉ batches of B (paper Eq. 6),
with the length bound L_min ≤ words ≤ L_max, clean-up, de-duplication and full provenance.

Crash safety: every batch's accepted records are appended (fsynced) to ``out`` before the next batch is
asked for, and a rerun keeps what is there and generates only what is missing. Each record stores the
attempt slot that produced it, so a rerun continues the same seeded sequence: with a deterministic backend
(``bank``, or an LLM with a fixed seed) an interrupted-and-resumed run writes what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.errors import FungalError, fail
from fungalzsl.io import append_jsonl, drop_torn_tail, output_file
from fungalzsl.synth.preset import PAPER_CLASSES
from fungalzsl.text.backends import Backend, BackendOptions, Request, Sampling, open_backend
from fungalzsl.text.cleanup import NearDuplicateIndex, clean_text, mask_names, name_forms, word_count
from fungalzsl.text.prompts import PromptSet, load_prompts
from fungalzsl.text.records import make_record, read_records_if_any

# The paper uses 100-300 per class; a bound stops a typo (1000000000) from writing gigabytes for hours.
MAX_PER_CLASS = 100_000


@dataclass
class GenerationReport:
    out: Path
    set_name: str
    backend: str
    per_class: int
    existing: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, Counter[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def shortfall(self) -> dict[str, int]:
        """Classes that still have fewer than ``per_class`` descriptions, and by how many."""
        gaps = {c: self.per_class - self.existing.get(c, 0) - self.added.get(c, 0) for c in self.existing}
        return {c: g for c, g in gaps.items() if g > 0}

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def request_seed(seed: int, cls: str, slot: int) -> int:
    """A stable 31-bit seed per (run seed, class, attempt slot): fits every backend's seed field."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{cls}:{slot}".encode()).digest()[:4], "big") >> 1


@contextlib.contextmanager
def _progress(enabled: bool, classes: Sequence[str], per_class: int, have: dict[str, int]) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=False,
    ) as prog:  # fmt: skip
        prog.tasks_by_class = {
            c: prog.add_task(c, total=per_class, completed=have.get(c, 0)) for c in classes
        }  # type: ignore[attr-defined]
        yield prog


def _check_existing(records: list[dict[str, Any]], out: Path, set_name: str, backend: Backend) -> None:
    """A set comes from one backend/model: refuse to top up a file written by another one."""
    for r in records:
        if r.get("set") not in (None, set_name):
            raise fail(
                f"{out} already holds set '{r.get('set')}', not '{set_name}'",
                "choose another --out, or pass the same --set-name to resume it",
            )
        if r.get("backend") and (r.get("backend"), r.get("model")) != (backend.kind, backend.model):
            raise fail(
                f"{out} holds descriptions from {r.get('backend')}:{r.get('model')}, not {backend.describe()}",
                "a description set comes from one backend: choose another --out",
            )


def generate_descriptions(
    backend: str | Backend,
    classes: Sequence[str] = PAPER_CLASSES,
    per_class: int = 100,
    out: str | Path = "descriptions/bank.jsonl",
    *,
    seed: int = 0,
    temperature: float = 0.9,
    top_p: float | None = None,
    top_k: int | None = None,
    max_tokens: int = 160,
    min_words: int = 10,
    max_words: int = 70,
    batch_size: int = 8,
    mask_class_name: bool = False,
    set_name: str | None = None,
    prompts: str | Path | PromptSet | None = None,
    near_duplicate: float = 0.8,
    max_resample: int = 3,
    options: BackendOptions | None = None,
    progress: bool = False,
    resume: bool = True,
) -> GenerationReport:
    """Write ``per_class`` descriptions of each class to ``out`` (JSONL), keeping any already there.

    ``backend`` is a spec (``bank``, ``openai:gpt-4o``, ``ollama:llama3.2``, ``hf:DIR``, ``llamacpp:F.gguf``)
    or an open :class:`Backend`. Outputs outside [min_words, max_words] or (near-)duplicating an accepted
    one are resampled, up to ``max_resample`` extra attempts per missing description; what is still missing
    after that is reported in ``GenerationReport.shortfall`` (rerun to top up). ``resume=False`` discards
    what ``out`` holds and starts afresh (``fungalzsl run`` after a settings change, ``--overwrite``)."""
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise fail(
            f"--per-class must be between 1 and {MAX_PER_CLASS:,} (got {per_class:,})",
            "ask for fewer descriptions per class",
        )
    if not 1 <= min_words <= max_words:
        raise fail(
            f"word bounds {min_words}..{max_words} are invalid", "need 1 <= --min-words <= --max-words"
        )
    if batch_size < 1 or max_resample < 0:
        raise fail("--batch-size must be >= 1 and --max-resample >= 0", "fix the option")
    if not 0.0 <= temperature <= 2.0:
        raise fail(f"--temperature {temperature} is out of range", "use a value between 0 and 2")
    classes = [c.strip() for c in classes if c and c.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise fail("--classes must list distinct class names", "e.g. --classes spore,hyphae,mycelium")
    out = Path(out)
    if out.suffix != ".jsonl":
        raise fail(f"--out {out} must be a .jsonl file", "e.g. --out descriptions/bank.jsonl")
    output_file(out, "--out")
    prompt_set = prompts if isinstance(prompts, PromptSet) else load_prompts(prompts)
    if not resume and out.exists():
        out.unlink()  # only after the settings above validated, so a typo never costs a finished set
    torn = drop_torn_tail(out)  # else the next append would leave that line mid-file, where it is an error
    if torn:
        print(f"note: cut the torn last line of {out} ({torn} bytes from an interrupted write); "
              "its descriptions are made again", file=sys.stderr)  # fmt: skip
    existing_records = read_records_if_any(out)
    if set_name is None:
        set_name = next((r["set"] for r in existing_records if r.get("set")), out.stem)

    own = isinstance(backend, Backend)
    be: Backend = backend if isinstance(backend, Backend) else open_backend(backend, options)
    try:
        _check_existing(existing_records, out, set_name, be)
        is_bank = be.kind == "bank"
        sampling = Sampling(temperature, top_p, top_k, max_tokens, min_words, max_words)
        provenance_sampling = {
            **({} if is_bank else sampling.as_dict()),
            "min_words": min_words, "max_words": max_words, "batch_size": batch_size,
            "near_duplicate": near_duplicate, "masked_class_name": mask_class_name,
        }  # fmt: skip
        report = GenerationReport(out=out, set_name=set_name, backend=be.describe(), per_class=per_class)
        by_class: dict[str, list[dict[str, Any]]] = {c: [] for c in classes}
        for r in existing_records:
            by_class.setdefault(str(r.get("class")), []).append(r)
        report.existing = {c: len(by_class[c]) for c in classes}
        t0 = time.perf_counter()
        with _progress(progress, classes, per_class, report.existing) as prog:
            for cls in classes:
                _fill_class(
                    be, cls, by_class[cls], report, prompt_set, sampling, provenance_sampling,
                    seed=seed, batch_size=batch_size, mask=mask_class_name, near_duplicate=near_duplicate,
                    max_resample=max_resample, on_progress=(
                        (lambda n, c=cls: prog.update(prog.tasks_by_class[c], advance=n)) if prog else None
                    ),
                )  # fmt: skip
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        if not own:
            be.close()


def _fill_class(
    be: Backend,
    cls: str,
    have: list[dict[str, Any]],
    report: GenerationReport,
    prompt_set: PromptSet,
    sampling: Sampling,
    provenance_sampling: dict[str, Any],
    *,
    seed: int,
    batch_size: int,
    mask: bool,
    near_duplicate: float,
    max_resample: int,
    on_progress: Any,
) -> None:
    need = report.per_class - len(have)
    report.added[cls] = 0
    rejected = report.rejected.setdefault(cls, Counter())
    if need <= 0:
        return
    index = NearDuplicateIndex(threshold=near_duplicate)
    for r in have:
        index.add(str(r.get("text", "")))
    forms = name_forms(cls, getattr(be, "class_names", lambda c: [])(cls))
    echoes = prompt_set.rendered(cls, sampling.min_words, sampling.max_words)
    system = prompt_set.system_text(sampling.min_words, sampling.max_words)
    # Continue the attempt sequence where the previous run's last accepted record left it.
    slot = 1 + max((int(r["attempt"]) for r in have if isinstance(r.get("attempt"), int)), default=-1)
    budget = need * (1 + max_resample)
    attempts = accepted = 0
    while accepted < need and attempts < budget:
        n = min(batch_size, need - accepted, budget - attempts)  # ask only for what is still missing
        reqs = []
        for k in range(n):
            p = prompt_set.prompts[(slot + k) % len(prompt_set.prompts)]
            user = p.render(cls, sampling.min_words, sampling.max_words)
            reqs.append(Request(cls, p, system, user, request_seed(seed, cls, slot + k)))
        results = be.complete(reqs, sampling)
        batch: list[dict[str, Any]] = []
        error: BaseException | None = None
        for k, (req, res) in enumerate(zip(reqs, results)):
            if isinstance(res, BaseException):
                error = error or res
                continue
            if accepted + len(batch) >= need:
                break
            text = clean_text(res, echoes)
            if mask:
                text = mask_names(text, forms)
            reason = _reject_reason(text, sampling, index)
            if reason:
                rejected[reason] += 1
                continue
            batch.append(
                make_record(
                    cls, text, set_name=report.set_name, backend=be.kind, model=be.model,
                    prompt_id=req.prompt.id, temperature=None if be.kind == "bank" else sampling.temperature,
                    sampling=provenance_sampling, seed=req.seed, attempt=slot + k,
                )
            )  # fmt: skip
        slot += n
        attempts += n
        if batch:
            append_jsonl(report.out, batch)  # saved before anything else can go wrong
            accepted += len(batch)
            report.added[cls] = accepted
            if on_progress:
                on_progress(len(batch))
        if error is not None:
            if isinstance(error, FungalError):
                raise error
            raise fail(
                f"{be.describe()} failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                "finished descriptions are saved: run the same command again to resume",
            ) from error


def _reject_reason(text: str, sampling: Sampling, index: NearDuplicateIndex) -> str | None:
    if not text:
        return "empty"
    n = word_count(text)
    if n < sampling.min_words:
        return "too_short"
    if n > sampling.max_words:
        return "too_long"
    dup = index.add_if_new(text)
    return f"{dup}_duplicate" if dup else None
