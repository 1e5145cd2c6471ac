"""Process-level helpers: the one CPU count every stage sizes its workers and threads with."""

from __future__ import annotations

import os

from fungalzsl import runtime


def test_available_cpus_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert runtime.available_cpus() == 3


def test_available_cpus_without_an_affinity_mask_counts_the_machine(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert runtime.available_cpus() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the OS cannot tell
    assert runtime.available_cpus() == 1
