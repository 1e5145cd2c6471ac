import pytest

from fungalzsl.pipeline.stages import Stage, StageRunner


def _pipeline(tmp_path, calls, settings, crash_in=None):
    runner = StageRunner(tmp_path, log=lambda _m: None)

    def work(name):
        def fn(resume):
            if name == crash_in:
                raise RuntimeError("killed")
            calls.append(name + ("+resume" if resume else ""))
            (tmp_path / f"{name}.out").write_text(name)

        return fn

    stages = [
        Stage("a", settings["a"], work("a"), outputs=[tmp_path / "a.out"]),
        Stage("b", settings["b"], work("b"), after=["a"], outputs=[tmp_path / "b.out"]),
        Stage("c", settings["c"], work("c"), after=["b"], outputs=[tmp_path / "c.out"]),
    ]
    for s in stages:
        runner.run(s)


def test_second_run_does_no_work(tmp_path):
    calls = []
    settings = {"a": {"n": 1}, "b": {"m": 2}, "c": {}}
    _pipeline(tmp_path, calls, settings)
    assert calls == ["a", "b", "c"]
    calls.clear()
    _pipeline(tmp_path, calls, settings)
    assert calls == []


def test_changing_a_stage_reruns_it_and_later_stages_only(tmp_path):
    calls = []
    _pipeline(tmp_path, calls, {"a": {"n": 1}, "b": {"m": 2}, "c": {}})
    calls.clear()
    _pipeline(tmp_path, calls, {"a": {"n": 1}, "b": {"m": 3}, "c": {}})
    assert calls == ["b", "c"]


def test_killed_run_restarts_from_the_unfinished_stage(tmp_path):
    calls = []
    settings = {"a": {}, "b": {}, "c": {}}
    with pytest.raises(RuntimeError):
        _pipeline(tmp_path, calls, settings, crash_in="b")
    assert calls == ["a"]
    calls.clear()
    _pipeline(tmp_path, calls, settings)
    assert calls == ["b+resume", "c"]


def test_a_crash_after_a_settings_change_restarts_rather_than_resumes(tmp_path):
    calls = []
    _pipeline(tmp_path, calls, {"a": {}, "b": {"v": 1}, "c": {}})
    with pytest.raises(RuntimeError):
        _pipeline(tmp_path, calls, {"a": {}, "b": {"v": 2}, "c": {}}, crash_in="b")
    calls.clear()
    _pipeline(tmp_path, calls, {"a": {}, "b": {"v": 3}, "c": {}})
    assert calls == ["b", "c"]


def test_missing_output_reruns_the_stage(tmp_path):
    calls = []
    settings = {"a": {}, "b": {}, "c": {}}
    _pipeline(tmp_path, calls, settings)
    (tmp_path / "c.out").unlink()
    calls.clear()
    _pipeline(tmp_path, calls, settings)
    assert calls == ["c"]
