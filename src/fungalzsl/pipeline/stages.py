"""Cached, resumable pipeline stages.

A stage is done when its record in ``OUT/pipeline.json`` carries the same key as now. The key hashes
the stage's own settings together with the keys of the stages it reads from, so changing one stage's
settings reruns that stage and everything after it, and nothing before it.

A stage's record is written with ``done: false`` before it works. A run killed half-way leaves that
record, so the next run calls the stage with ``resume=True`` and the stage finishes its own partial work
(the generator and the describer skip finished items, the trainer restarts from its last checkpoint).
When the key differs, or there is no record, the stage starts afresh (``resume=False``) and must
discard whatever it finds in its outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl import __version__
from fungalzsl.io import atomic_write_json, sha256_json
from fungalzsl.rundir import PIPELINE_STATE_FILE

STATE_FILE = PIPELINE_STATE_FILE


@dataclass
class Stage:
    """One step: a name, the settings that determine its output, the stages it depends on, and the work."""

    name: str
    settings: dict[str, Any]
    run: Callable[[bool], Any]  # called with resume=True to finish the same stage's interrupted work
    after: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


class StageRunner:
    """Runs stages in order, skipping those whose key matches the recorded one and whose outputs exist."""

    def __init__(self, out: Path, log: Callable[[str], None] = print):
        self.out = Path(out)
        self.state_path = self.out / STATE_FILE
        self.log = log
        self.keys: dict[str, str] = {}
        self.state: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        import json

        try:
            data = json.loads(self.state_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def key(self, stage: Stage) -> str:
        upstream = {name: self.keys[name] for name in stage.after}
        return sha256_json(
            {"stage": stage.name, "settings": stage.settings, "upstream": upstream, "version": __version__}
        )[:16]

    def is_done(self, stage: Stage) -> bool:
        rec = self.state.get(stage.name) or {}
        return (
            bool(rec.get("done"))
            and rec.get("key") == self.key(stage)
            and all(p.exists() for p in stage.outputs)
        )

    def run(self, stage: Stage) -> bool:
        """Run ``stage`` unless it is done; returns True if it ran."""
        key = self.key(stage)
        self.keys[stage.name] = key
        if self.is_done(stage):
            self.log(f"[{stage.name}] up to date (key {key}); skipped")
            return False
        previous = self.state.get(stage.name) or {}
        resume = previous.get("key") == key and not previous.get("done")
        # Record the attempt before working, and forget every later stage that read this one's output:
        # a crash must never leave a record that looks finished.
        self.state[stage.name] = {"key": key, "after": stage.after, "done": False}
        for later in [n for n, rec in self.state.items() if stage.name in (rec or {}).get("after", [])]:
            self.state.pop(later, None)
        atomic_write_json(self.state_path, self.state)
        self.log(f"[{stage.name}] {'resuming' if resume else 'running'} (key {key})")
        t0 = time.perf_counter()
        stage.run(resume)
        seconds = round(time.perf_counter() - t0, 2)
        self.state[stage.name] = {
            "key": key,
            "after": stage.after,
            "done": True,
            "seconds": seconds,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(self.state_path, self.state)
        self.log(f"[{stage.name}] done in {seconds:.1f} s")
        return True
