"""Run directory, resume determinism and bad input for ``fungalzsl train``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.models import load_run
from fungalzsl.train.loop import train_run
from tiny_data import make_dataset, make_descriptions

CFG = {"epochs": 3, "batch_size": 6, "unfreeze_every": 1, "unfreeze_max": {"image": 2, "text": 0},
       "image_size": 32, "progress": False, "lr": 5e-3}  # fmt: skip


class Crash(Exception):
    pass


# Bit-identical resume, in the style of Hugging Face Trainer's tests: train to the end; separately
# interrupt a run and resume it; every file the runs leave must be the same (timings aside). 12
# training images in batches of 6: 2 steps an epoch; epoch 2 starts the second unfreezing stage.
EXACT = {"epochs": 3, "batch_size": 6, "unfreeze_every": 2, "unfreeze_max": {"image": 1, "text": 0},
         "image_size": 32, "embed_dim": 16, "progress": False, "lr": 5e-3, "warmup_steps": 2,
         "device": "cpu"}  # fmt: skip
VARIANTS = {
    "contrastive": {},
    "sigmoid": {"loss": "sigmoid"},
    "catlip": {"objective": "catlip"},
    # The text tower (MiniLM, dropout 0.1) trains from epoch 2: the RNG must be where it was.
    "dropout": {"unfreeze_max": {"image": 1, "text": 1}},
}
# timings, and memory: they measure the process, not the run
TIMINGS = ("epoch_s", "s_per_it", "train_wall_s", "peak_rss_mb", "peak_cuda_mb")


@pytest.fixture(scope="module")
def exact_runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path, Path]]:
    """(data, descriptions, the uninterrupted run) of a variant, trained once per module."""
    root = tmp_path_factory.mktemp("exact")
    data = make_dataset(root / "data", {"train": 4, "val": 2})
    desc = make_descriptions(root / "d.jsonl")
    done: dict[str, Path] = {}

    def get(variant: str) -> tuple[Path, Path, Path]:
        if variant not in done:
            train_run(data, desc, root / variant, "lite", {**EXACT, **VARIANTS[variant]})
            done[variant] = root / variant
        return data, desc, done[variant]

    return get


def _without_timings(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def assert_same_run(a: Path, b: Path) -> None:
    """Every file of run ``a`` is in ``b`` with the same bytes; JSON files equal but for timings."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".jsonl":
            got = [json.loads(line) for line in (b / rel).read_text().splitlines()]
            want = [json.loads(line) for line in (a / rel).read_text().splitlines()]
            assert _without_timings(got) == _without_timings(want), rel
        elif rel.suffix == ".json":
            got, want = json.loads((b / rel).read_text()), json.loads((a / rel).read_text())
            assert _without_timings(got) == _without_timings(want), rel
        else:  # weights, optimiser moments, RNG state, class embeddings: bit for bit
            assert (b / rel).read_bytes() == (a / rel).read_bytes(), rel


def _crash_at_step(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Stop the run just before its ``n``-th optimiser step (1-based): killed in the middle of an epoch."""
    import fungalzsl.train.loop as loop

    real, calls = loop.optimizer_step, [0]

    def step(*args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] == n:
            raise Crash
        real(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", step)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, stop",
    [
        ("contrastive", "after epoch 0"),  # an epoch boundary inside the first unfreezing stage
        ("contrastive", "after epoch 1"),  # resumes into epoch 2's new stage
        ("contrastive", "at step 6"),  # mid-epoch 2: its first step was taken, then the run died
        ("sigmoid", "after epoch 1"),
        ("catlip", "after epoch 1"),
        ("dropout", "after epoch 1"),
        ("dropout", "at step 6"),
    ],
)
def test_interrupted_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    exact_runs: Callable[[str], tuple[Path, Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
    stop: str,
) -> None:
    data, desc, straight = exact_runs(variant)
    cfg, run = {**EXACT, **VARIANTS[variant]}, tmp_path / "resumed"
    hook = None
    if stop.startswith("after epoch"):
        epoch = int(stop.rsplit(" ", 1)[1])

        def hook(rec: dict) -> None:
            if rec["epoch"] == epoch + 1:  # records count epochs from 1; the ids above from 0
                raise Crash  # as if killed right after the epoch's checkpoint

    else:
        _crash_at_step(monkeypatch, int(stop.rsplit(" ", 1)[1]))
    with pytest.raises(Crash):
        train_run(data, desc, run, "lite", cfg, on_epoch_end=hook)
    monkeypatch.undo()
    with pytest.raises(FungalError, match="already holds a training run"):  # never over it unasked
        train_run(data, desc, run, "lite", cfg)
    train_run(data, desc, run, "lite", cfg, resume=True)
    assert_same_run(straight, run)


def test_run_directory_contract(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    run = tmp_path / "run"
    cfg = {**CFG, "epochs": 1, "wise_ft": [0.0, 1.0], "wise_ft_alpha": 0.5}
    result = train_run(data, desc, run, "lite", cfg)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "lite" and config["classes"] == ["hyphae", "mycelium", "spore"]
    assert config["descriptions"]["hash"] == result["descriptions_hash"] and config["status"] == "done"
    emb = load_file(str(run / "class_embeddings.safetensors"))["embeddings"]
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (
        set(config["wise_ft"]["alphas"]) == {"0.0", "0.5", "1.0"} and config["wise_ft"]["saved_alpha"] == 0.5
    )
    assert (run / "model_finetuned.safetensors").is_file()
    model, cfg_back = load_run(run)
    assert cfg_back == config
    # the saved class embeddings are what the reloaded (WiSE-FT) model gives for the descriptions
    from fungalzsl.predict.zeroshot import class_embeddings
    from fungalzsl.text.records import load_description_set

    torch.testing.assert_close(
        class_embeddings(model, load_description_set(desc).by_class, config["classes"]), emb
    )
    assert not list(run.glob("*.tmp")) and not (run / ".last-new").exists()


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["train", *args])
    return res.exit_code, res.output  # click 8.2+: output holds stdout and stderr


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    good = make_descriptions(tmp_path / "good.jsonl")
    missing = make_descriptions(tmp_path / "missing.jsonl", classes=("spore", "hyphae"))
    extra = make_descriptions(tmp_path / "extra.jsonl", classes=("spore", "hyphae", "mycelium", "yeast"))
    (tmp_path / "empty").mkdir()
    cases = [
        (["--data", str(tmp_path / "nope"), "--descriptions", str(good)], "does not exist"),
        (["--data", str(tmp_path / "empty"), "--descriptions", str(good)], "has no 'train' split"),
        (["--data", str(data), "--descriptions", str(missing)], "no descriptions for class(es): mycelium"),
        (["--data", str(data), "--descriptions", str(extra)], "names class(es) not in the data: yeast"),
        (["--data", str(data), "--descriptions", str(good), "--model", "resnet"], "unknown model spec"),
        (
            ["--data", str(data), "--descriptions", str(good), "--config", "nope.yaml"],
            "config nope.yaml not found",
        ),
        (["--data", str(data), "--descriptions", str(good), "--epochs", "0"], "epochs"),
    ]
    for i, (args, message) in enumerate(cases):
        code, out = _cli(*args, "--out", str(tmp_path / f"run{i}"), "--quiet")
        assert code == 2, (args, out)
        assert message in out and "Traceback" not in out, (message, out)
        assert len([ln for ln in out.splitlines() if ln.startswith("error:")]) == 1
        assert not (tmp_path / f"run{i}" / "model.safetensors").exists()


def test_corrupt_image_is_skipped_with_a_warning_and_recorded(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 3, "val": 1})
    (data / "train" / "hyphae" / "zz-broken.png").write_bytes(b"\x89PNG broken")
    desc = make_descriptions(tmp_path / "d.jsonl")
    code, out = _cli("--data", str(data), "--descriptions", str(desc), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--batch-size", "4", "--config", str(_tiny_yaml(tmp_path)))  # fmt: skip
    assert code == 0, out
    assert "skipped 1 unreadable training image" in out and "zz-broken.png" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["skipped_images"]) == 1


def test_resume_with_other_descriptions_or_other_images_is_refused_but_an_older_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    run, cfg = tmp_path / "run", {**CFG, "epochs": 1}
    first = train_run(data, desc, run, "lite", cfg)
    saved = json.loads((run / "last" / "state.json").read_text())
    assert saved["data_fingerprint"] == first["data_fingerprint"] and len(first["data_fingerprint"]) == 16
    other = make_descriptions(tmp_path / "other.jsonl", per_class=2)
    with pytest.raises(FungalError, match="other classes or descriptions"):
        train_run(data, other, run, "lite", cfg, resume=True)
    # Same class names, other pictures (another seed): refused, on the CLI as one line.
    redrawn = make_dataset(tmp_path / "redrawn", {"train": 2, "val": 1}, seed=1)
    code, out = _cli("--data", str(redrawn), "--descriptions", str(desc), "--out", str(run), "--resume",
                     "--config", str(_tiny_yaml(tmp_path)), "--epochs", "1", "--quiet")  # fmt: skip
    assert code == 2 and "was trained on other images" in out and "Traceback" not in out, out
    assert len([ln for ln in out.splitlines() if ln.startswith("error:")]) == 1
    # One more file under val/ with the same data otherwise: refused too.
    extra = data / "val" / "spore" / "000009.png"
    extra.write_bytes((data / "val" / "spore" / "000000.png").read_bytes())
    with pytest.raises(FungalError, match="other images"):
        train_run(data, desc, run, "lite", cfg, resume=True)
    extra.unlink()
    # A run saved before the fingerprint existed still resumes (and records the fingerprint now), and
    # its next epoch starts from the RNG state last/ saved: the first passes over the images did not
    # draw from it (the slow bit-identical tests below show what that changes).
    state_file = run / "last" / "state.json"
    state_file.write_text(json.dumps({k: v for k, v in saved.items() if k != "data_fingerprint"}))
    saved_rng = load_file(str(run / "last" / "optimizer.safetensors"))["rng.torch"]
    import fungalzsl.train.loop as loop

    real_enter, rng_at_epoch = loop.enter_stage, []

    def enter_stage(t, state, epoch):
        rng_at_epoch.append(torch.get_rng_state())
        return real_enter(t, state, epoch)

    monkeypatch.setattr(loop, "enter_stage", enter_stage)
    again = train_run(data, desc, run, "lite", {**cfg, "epochs": 2}, resume=True)
    assert again["data_fingerprint"] == first["data_fingerprint"] and again["epochs_run"] == 2
    assert len(rng_at_epoch) == 1 and torch.equal(rng_at_epoch[0], saved_rng)


def test_resume_of_a_missing_run_or_one_without_a_finished_epoch_is_one_line(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    args = [
        "--data",
        str(data),
        "--descriptions",
        str(desc),
        "--config",
        str(_tiny_yaml(tmp_path)),
        "--quiet",
    ]
    code, out = _cli(*args, "--out", str(tmp_path / "typo"), "--resume")
    assert code == 2 and "cannot resume" in out and "does not exist" in out and "Traceback" not in out, out
    assert not (tmp_path / "typo").exists()  # no silent fresh start, no folder made
    started = tmp_path / "started"  # killed during its first epoch: config.json, no last/
    started.mkdir()
    (started / "config.json").write_text('{"status": "training"}')
    code, out = _cli(*args, "--out", str(started), "--resume")
    assert code == 2 and "has no resume state" in out, out
    assert not (started / "model.safetensors").exists()


def _tiny_yaml(tmp: Path) -> Path:
    p = tmp / "tiny.yaml"
    p.write_text("train:\n  model: lite\n  image_size: 32\n  unfreeze_every: 0\n")
    return p
