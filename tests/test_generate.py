"""The dataset writer: layout, metadata, manifest, determinism, shards, resume."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fungalzsl.io import read_jsonl
from fungalzsl.synth import generate_dataset
from fungalzsl.synth.layout import PROGRESS_DIR

N, SIZE = 30, 32


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (hidden progress files excluded)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and PROGRESS_DIR not in p.parts
    }


def gen(out: Path, **kw):
    kw.setdefault("num_images", N)
    kw.setdefault("size", SIZE)
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return generate_dataset(out, "paper", **kw)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    gen(out, seed=3)
    return out


def test_layout_splits_and_manifest(clean):
    man = json.loads((clean / "dataset.json").read_text())
    assert man["classes"] == ["spore", "hyphae", "mycelium"]
    assert {k: v["count"] for k, v in man["splits"].items()} == {"train": 24, "val": 3, "test": 3}
    for split, v in man["splits"].items():
        assert v["per_class"] == dict.fromkeys(man["classes"], v["count"] // 3)  # stratified
        for c in man["classes"]:
            assert len(list((clean / split / c).glob("*.png"))) == v["count"] // 3
    assert man["seed"] == 3 and man["size"] == SIZE and man["num_images"] == N
    assert len(man["preset"]["hash"]) == 16 and man["preset"]["settings"]["classes"][0]["name"] == "spore"
    assert not (clean / PROGRESS_DIR).exists()
    assert not list(clean.rglob("*.tmp"))


def test_default_split_proportions_are_the_papers():
    from fungalzsl.synth import load_preset, plan_classes

    jobs = plan_classes(load_preset("paper"), 6000)
    counts: dict[tuple[str, str], int] = {}
    for j in jobs:
        counts[(j.split, j.label)] = counts.get((j.split, j.label), 0) + 1
    for c in ("spore", "hyphae", "mycelium"):
        assert (counts[("train", c)], counts[("val", c)], counts[("test", c)]) == (1600, 200, 200)


def test_metadata_schema(clean):
    table = pq.read_table(clean / "metadata.parquet")
    rows = [json.loads(line) for line in (clean / "metadata.jsonl").read_text().splitlines()]
    assert table.to_pylist() == rows
    types = {f.name: str(f.type) for f in table.schema}
    expected = {
        "file_name": "string", "split": "string", "label": "string", "label_id": "int64",
        "index": "int64", "seed": "int64", "time_s": "double", "temperature_K": "double",
        "n_structures": "int64", "depth": "int64", "branch_length": "double", "branch_width": "double",
        "alpha": "double", "n_segments": "int64", "overlap": "string", "width": "int64", "height": "int64",
    }  # fmt: skip
    for k, t in expected.items():
        assert types[k] == t, k
    assert [r["index"] for r in rows] == list(range(N))
    # Hugging Face imagefolder reads SPLIT/metadata.jsonl with paths relative to the split folder.
    for split in ("train", "val", "test"):
        per_split = [json.loads(line) for line in (clean / split / "metadata.jsonl").read_text().splitlines()]
        assert [r["index"] for r in per_split] == [r["index"] for r in rows if r["split"] == split]
        assert all((clean / split / r["file_name"]).is_file() for r in per_split)
    import pyarrow.csv as pacsv

    assert pacsv.read_csv(clean / "metadata.csv").column("file_name").to_pylist() == [
        r["file_name"] for r in rows
    ]
    for r in rows:
        assert (clean / r["file_name"]).is_file()
        assert r["file_name"] == f"{r['split']}/{r['label']}/{r['index']:06d}.png"
        assert ["spore", "hyphae", "mycelium"][r["label_id"]] == r["label"]


def test_same_output_for_1_or_2_workers_and_for_shards(clean, tmp_path):
    from fungalzsl.synth.workers import useful_workers

    ref = tree_hashes(clean)
    assert useful_workers(2, N) == 2  # really two processes
    gen(tmp_path / "w2", seed=3, workers=2)
    assert tree_hashes(tmp_path / "w2") == ref
    part0 = gen(tmp_path / "parts", seed=3, shard="0/2")
    assert part0["complete"] is False and not (tmp_path / "parts" / "dataset.json").exists()
    gen(tmp_path / "parts", seed=3, shard="1/2")
    assert tree_hashes(tmp_path / "parts") == ref


def test_a_part_leaves_other_parts_temporary_files_alone(tmp_path):
    """Parts may run at the same time on several machines sharing one --out."""
    out = tmp_path / "p"
    gen(out, seed=3, num_images=6, shard="0/2")
    busy = out / PROGRESS_DIR / "tmp-0-of-2" / "000004.png.4242.tmp"
    busy.write_bytes(b"being written by part 0")
    gen(out, seed=3, num_images=6, shard="1/2")  # completes the set
    assert (out / "dataset.json").is_file()
    assert not (out / PROGRESS_DIR).exists()  # the finished set drops its progress folder
    gen_again = gen(tmp_path / "q", seed=3, num_images=6, shard="1/2")
    assert gen_again["complete"] is False
    stray = tmp_path / "q" / PROGRESS_DIR / "tmp-0-of-2"
    stray.mkdir(parents=True)
    (stray / "x.tmp").write_bytes(b"part 0 at work")
    gen(tmp_path / "q", seed=3, num_images=6, shard="1/2")
    assert (stray / "x.tmp").is_file()


def test_other_seed_gives_other_images(clean, tmp_path):
    gen(tmp_path / "s4", seed=4, num_images=3)
    a = (clean / "train/spore/000000.png").read_bytes()
    assert (tmp_path / "s4/train/spore/000000.png").read_bytes() != a


def test_resume_after_interruption_completes_identically(clean, tmp_path):
    out = tmp_path / "killed"

    def stop_after(done, total):
        if done == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(out, seed=3, on_progress=stop_after)
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 11 and not (out / "dataset.json").exists()
    # What a hard kill can leave: a temp file, and an image whose journal row never landed (the row
    # torn mid-write). Such an image is not trusted and is redone.
    journal = next((out / PROGRESS_DIR).glob("rows-*.jsonl"))
    lines = journal.read_text().splitlines()
    assert len(lines) == 11
    victim = out / json.loads(lines[-1])["file_name"]
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    (victim.parent / f".{victim.name}.999.tmp").write_bytes(b"\x89PNG torn")
    (out / PROGRESS_DIR / "tmp-0-of-1" / "000029.png.999.tmp").write_bytes(b"\x89PNG torn")
    victim.write_bytes(b"unfinished")
    done_before = {p: p.stat().st_mtime_ns for p in pngs if p != victim}
    with pytest.raises(Exception, match="unfinished fungalzsl run"):
        gen(out, seed=3)
    gen(out, seed=3, resume=True)
    assert tree_hashes(out) == tree_hashes(clean)
    assert not list(out.rglob("*.tmp"))
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())  # finished work not redone


def test_resume_makes_again_the_recorded_images_a_power_loss_damaged(clean, tmp_path, capsys):
    out = tmp_path / "lost"

    def stop_after(done, total):
        if done == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(out, seed=3, on_progress=stop_after)
    journal = next((out / PROGRESS_DIR).glob("rows-*.jsonl"))
    listed = [out / json.loads(line)["file_name"] for line in journal.read_text().splitlines()]
    assert len(listed) == 12
    data = listed[0].read_bytes()
    listed[0].write_bytes(b"")  # the name reached the disk, the data did not
    listed[1].write_bytes(listed[1].read_bytes()[: len(data) // 2])  # cut short
    listed[2].write_bytes(b"\0" * listed[2].stat().st_size)  # blocks allocated, never written
    flipped = bytearray(listed[3].read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # one bad byte inside the image data: its CRC fails
    listed[3].write_bytes(bytes(flipped))
    intact = {p: p.stat().st_mtime_ns for p in listed[4:]}
    capsys.readouterr()
    gen(out, seed=3, resume=True)
    assert "4 image(s) recorded as done are empty or damaged" in capsys.readouterr().err
    assert tree_hashes(out) == tree_hashes(clean)
    assert all(p.stat().st_mtime_ns == t for p, t in intact.items())  # whole files are kept


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_an_image_is_journalled_only_after_its_files_and_names_are_on_disk(tmp_path, monkeypatch, syncfs):
    """Linux: one syncfs(2) of the file system per journal batch; elsewhere (or where it fails) an
    fsync of every file (image and masks) and then of every folder they were renamed into."""
    import os

    import fungalzsl.io
    import fungalzsl.synth.layout as layout

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("names open files through /proc")
    events: list[tuple[str, object]] = []
    real_fsync, real_append, real_syncfs = os.fsync, layout.append_jsonl, fungalzsl.io._syncfs

    def fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def record_syncfs(folder: Path) -> bool:
        events.append(("syncfs", folder))
        return real_syncfs(folder) if syncfs else False

    def append(path, rows):
        rows = list(rows)
        if path.name.startswith("rows-"):
            events.append(("journal", rows))
        real_append(path, rows)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(fungalzsl.io, "_syncfs", record_syncfs)
    monkeypatch.setattr(layout, "append_jsonl", append)
    out = tmp_path / "d"
    gen(out, num_images=6, seed=1, masks=True)
    journalled = [(i, r) for i, (kind, rows) in enumerate(events) if kind == "journal" for r in rows]
    assert len(journalled) == 6
    for at, row in journalled:
        before = [(kind, p) for kind, p in events[:at] if kind != "journal"]
        for key in ("file_name", "mask_file_name", "instance_file_name"):
            final = out / row[key]
            if syncfs:  # the batch's flush: a syncfs of the file system holding it, then the append
                kind, folder = events[at - 1]
                assert kind == "syncfs" and os.stat(folder).st_dev == os.stat(final).st_dev, key
                continue
            synced = [p for kind, p in before if kind == "fsync"]
            assert final in synced and final.parent in synced[synced.index(final) + 1 :], (key, row[key])


@pytest.mark.slow
def test_resume_after_a_hard_kill(tmp_path):
    """SIGKILL a real 2-worker run mid-way, resume it, and get the same bytes as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys; from fungalzsl.synth import generate_dataset; "
        "generate_dataset(sys.argv[1], num_images=300, size=32, seed=5, workers=2, resume=len(sys.argv) > 2)"
    )
    cmd = [sys.executable, "-c", code, str(tmp_path / "k")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    journals = tmp_path / "k" / PROGRESS_DIR

    def journalled() -> int:
        return sum(f.stat().st_size for f in journals.glob("rows-*.jsonl")) if journals.is_dir() else 0

    while (len(list((tmp_path / "k").rglob("*.png"))) < 80 or not journalled()) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the main process and its workers
    proc.wait()
    assert 0 < len(list((tmp_path / "k").rglob("*.png"))) < 300
    assert not (tmp_path / "k/dataset.json").exists()
    # and, as if the power went too, a journalled image whose data never reached the disk
    rows = [r for j in journals.glob("rows-*.jsonl") for r in read_jsonl(j)]
    (tmp_path / "k" / rows[0]["file_name"]).write_bytes(b"")
    done = subprocess.run([*cmd, "resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    gen(tmp_path / "ref", num_images=300, size=32, seed=5)
    assert tree_hashes(tmp_path / "k") == tree_hashes(tmp_path / "ref")


def test_resume_of_a_run_started_by_an_older_image_algorithm_is_refused(clean, tmp_path):
    """A half-made set from a fungalzsl whose images differed (settings without "algorithm" are
    from algorithm 1) is not finished with different pixels; --overwrite starts it again."""
    out = tmp_path / "old"
    gen(out, seed=3, num_images=6)
    for name in (f"{PROGRESS_DIR}/settings.json", "dataset.json"):
        f = out / name
        if f.is_file():
            data = json.loads(f.read_text())
            data.pop("algorithm", None)
            f.write_text(json.dumps(data))
    with pytest.raises(
        Exception, match=r"fungalzsl version whose images differ.*image algorithm 1, this version 2"
    ):
        gen(out, seed=3, num_images=6, resume=True)
    assert gen(out, seed=3, num_images=6, overwrite=True)["algorithm"] == 2


def test_resume_with_other_settings_is_refused(clean, tmp_path):
    out = tmp_path / "r"
    gen(out, seed=3, num_images=6)
    with pytest.raises(Exception, match="different settings"):
        gen(out, seed=9, num_images=6, resume=True)
    again = gen(out, seed=3, num_images=6, resume=True)  # complete: nothing to do
    assert again["num_images"] == 6
    gen(out, seed=9, num_images=6, overwrite=True)
    assert json.loads((out / "dataset.json").read_text())["seed"] == 9


def test_webdataset_shards(tmp_path):
    out = tmp_path / "wds"
    man = gen(out, seed=1, fmt="webdataset")
    assert man["shards"] == {
        "shards/train-000000.tar": 24,
        "shards/val-000000.tar": 3,
        "shards/test-000000.tar": 3,
    }
    with tarfile.open(out / "shards/train-000000.tar") as tar:
        names = tar.getnames()
        assert names[:4] == ["000000.png", "000000.json", "000000.cls", "000000.txt"]
        meta = json.loads(tar.extractfile("000000.json").read())
        assert tar.extractfile("000000.cls").read() == str(meta["label_id"]).encode()
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert rows[0]["file_name"] == "shards/train-000000.tar#000000.png"
    gen(tmp_path / "wds2", seed=1, fmt="webdataset", workers=2)
    assert tree_hashes(tmp_path / "wds2") == tree_hashes(out)


def test_webdataset_in_parts_and_resumed(tmp_path):
    """Shards split between --shard parts, one part interrupted and finished by a plain --resume."""
    ref = gen(tmp_path / "ref", seed=2, fmt="webdataset", samples_per_shard=10)
    assert list(ref["shards"].values()) == [10, 10, 4, 3, 3]
    out = tmp_path / "parts"
    assert gen(out, seed=2, fmt="webdataset", samples_per_shard=10, shard="1/2")["complete"] is False

    def stop(done, total):
        if done == 12:  # the first shard of part 0 is written, the next one is half made
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(out, seed=2, fmt="webdataset", samples_per_shard=10, shard="0/2", on_progress=stop)
    assert not (out / "dataset.json").exists()
    assert (out / "shards/train-000000.tar").is_file() and not (out / "shards/train-000002.tar").exists()
    cut = out / "shards/train-000001.tar"  # part 1's, journalled: a power loss left it cut short
    cut.write_bytes(cut.read_bytes()[:1500])
    gen(out, seed=2, fmt="webdataset", samples_per_shard=10, resume=True)
    assert tree_hashes(out) == tree_hashes(tmp_path / "ref")


def test_sequence_mode_dataset(tmp_path):
    man = gen(tmp_path / "seq", mode="sequence", num_images=40, seed=2)
    rows = [json.loads(line) for line in (tmp_path / "seq/metadata.jsonl").read_text().splitlines()]
    assert man["mode"] == "sequence" and len(rows) == 40
    by_seq: dict[int, set[str]] = {}
    for r in rows:
        by_seq.setdefault(r["sequence_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_seq.values())  # a sequence never straddles splits


@pytest.mark.slow
def test_full_resolution_image(tmp_path):
    """The paper's ~2,310 px images work (one image per class)."""
    man = gen(tmp_path / "big", num_images=3, size=2310)
    from PIL import Image

    with Image.open(tmp_path / "big" / "train/mycelium/000002.png") as im:
        assert im.size == (2310, 2310)
    assert man["size"] == 2310
