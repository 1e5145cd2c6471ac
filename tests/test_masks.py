"""Segmentation masks (``generate --masks``): alignment with the image pixels, label and instance
semantics, and the writer's guarantees (determinism, parts, resume, WebDataset)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fungalzsl.synth import (
    generate_dataset,
    load_preset,
    make_image,
    make_masks,
    plan_classes,
    with_overrides,
)
from fungalzsl.synth.layout import PROGRESS_DIR
from fungalzsl.synth.masks import COVERAGE_THRESHOLD, render_masks
from fungalzsl.synth.sample import make_scene

PAPER = load_preset("paper")
LABELS = {"spore": 1, "hyphae": 2, "mycelium": 3}
# Image foreground, in the largest channel difference from the background (0–255). A mask pixel must
# differ visibly (> 3: not just an invisible anti-aliasing fringe); a pixel that differs by more than
# the coverage threshold's worth (0.1 · 255 ≈ 26) must be labelled.
VISIBLE, CLEAR = 3, round(COVERAGE_THRESHOLD * 255) + 1


def foreground(rgb: np.ndarray, background: str, tol: int) -> np.ndarray:
    bg = np.array([int(background[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb.astype(np.int16) - bg).max(axis=2) > tol


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("palette", ["paper", "random"])
def test_masks_align_with_the_image_pixels(size, palette):
    """Precision (mask pixels that are visibly drawn) and recall (clearly drawn pixels that are
    labelled) per class, with the class-specific overlap structures included."""
    preset = with_overrides(PAPER, palette=palette)
    counts: dict[str, np.ndarray] = {c: np.zeros(4, np.int64) for c in LABELS}
    for job in plan_classes(preset, 12):
        rgb, row = make_image(preset, 5, job, size)
        labels, _ = make_masks(preset, 5, job, size)
        assert labels.shape == rgb.shape[:2] and labels.dtype == np.uint8
        mask = labels > 0
        visible, clear = (
            foreground(rgb, row["background"], VISIBLE),
            foreground(rgb, row["background"], CLEAR),
        )
        counts[job.label] += [(mask & visible).sum(), mask.sum(), (mask & clear).sum(), clear.sum()]
    for c, (tp_p, n_mask, tp_r, n_clear) in counts.items():
        assert n_mask > 0 and n_clear > 0, c
        assert tp_p / n_mask >= 0.98, (c, tp_p / n_mask)
        assert tp_r / n_clear >= 0.98, (c, tp_r / n_clear)


def reference_masks(scene, size: int, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The definition, written plainly: every structure on its own full canvas, no bounding boxes."""
    import skia

    from fungalzsl.synth.render import PixelLayout

    layout = PixelLayout(scene, size)
    white = skia.Color4f(1, 1, 1, 1)
    covs = []
    for s in range(len(scene.struct_kind)):
        a = np.zeros((size, size), np.uint8)
        surface = skia.Surface(a, colorType=skia.kAlpha_8_ColorType, alphaType=skia.kPremul_AlphaType)
        disc = skia.Paint(AntiAlias=True, Color4f=white)
        line = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style, Color4f=white)
        layout.draw_structure(surface.getCanvas(), s, disc, line)
        covs.append(a.copy())
    cov = np.stack(covs)
    n = len(covs)
    # Largest coverage, the later structure on ties: argmax over the reversed stack.
    inst = (n - np.argmax(cov[::-1], axis=0)).astype(np.uint16)
    unc = np.ones((size, size), np.float32)
    for c in covs:
        unc *= 1.0 - c.astype(np.float32) * np.float32(1 / 255)
    inst[((1.0 - unc) < np.float32(COVERAGE_THRESHOLD)) | (cov.max(axis=0) == 0)] = 0
    lut = np.array([0] + [classes.index(k) + 1 for k in scene.struct_kind], np.uint8)
    return lut[inst], inst


@pytest.mark.parametrize("mode", ["classes", "sequence"])
def test_fast_masks_equal_the_plain_definition(mode):
    """The per-structure bounding boxes of render_masks clip nothing and leave nothing behind."""
    preset = with_overrides(PAPER, palette="random")
    if mode == "sequence":
        from fungalzsl.synth import plan_sequences

        jobs = plan_sequences(preset, 20, seed=1)[::4]
    else:
        jobs = plan_classes(preset, 9)
    for job in jobs:
        scene, _, _ = make_scene(preset, 1, job, mode)
        got = render_masks(scene, 48, preset.class_names)
        want = reference_masks(scene, 48, preset.class_names)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), job


def test_label_and_instance_semantics():
    """The structure's class decides: spores in hyphae images are 1, hyphae in mycelium images are 2
    (even in mycelium colours); one id per structure, ids' labels as recorded in the metadata."""
    allowed = {"spore": {0, 1}, "hyphae": {0, 1, 2}, "mycelium": {0, 2, 3}}
    overlap_label = {"hyphae": 1, "mycelium": 2}
    seen_overlap = dict.fromkeys(overlap_label, False)
    for job in plan_classes(PAPER, 36):
        scene, _, _ = make_scene(PAPER, 2, job, "classes")
        from fungalzsl.synth.sample import instance_row, metadata_row

        row = {**metadata_row(PAPER, 2, job, scene, {"time_s": 0, "temperature_K": 0}, 64)}
        row.update(instance_row(scene, PAPER.class_names))
        labels, inst = render_masks(scene, 64, PAPER.class_names)
        present = set(np.unique(labels).tolist())
        assert present <= allowed[job.label] and LABELS[job.label] in present, (job, present)
        overlap = json.loads(row["overlap"])
        if job.label in overlap_label:
            has = overlap_label[job.label] in present
            assert has == bool(overlap), (job, overlap, present)
            seen_overlap[job.label] |= has
        # Every structure recorded in the metadata is one instance, and each id carries its label.
        assert row["n_instances"] == row["n_structures"] + row["n_overlap"]
        ids = np.unique(inst[inst > 0])
        assert ids.tolist() == list(range(1, row["n_instances"] + 1))
        per_id = np.array([0, *json.loads(row["instance_labels"])], np.uint8)
        assert np.array_equal(per_id[inst], labels)
    assert all(seen_overlap.values())  # the overlap case was exercised for both classes


def test_masks_do_not_depend_on_pixel_variations_and_use_no_randomness():
    """Noise/grayscale change the image only; the masks are of the drawn structures."""
    job = plan_classes(PAPER, 3)[2]
    plain = make_masks(PAPER, 0, job, 32)
    varied = make_masks(with_overrides(PAPER, noise_sd=0.1, grayscale=True), 0, job, 32)
    assert all(np.array_equal(a, b) for a, b in zip(plain, varied))


# ---------------------------------------------------------------- the dataset writer
N, SIZE = 30, 32


def tree_hashes(root: Path) -> dict[str, str]:
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
    kw.setdefault("masks", True)
    kw.setdefault("seed", 3)
    return generate_dataset(out, "paper", **kw)


@pytest.fixture(scope="module")
def with_masks(tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    gen(out)
    return out


def read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


def test_dataset_files_metadata_and_manifest(with_masks, tmp_path):
    out = with_masks
    man = json.loads((out / "dataset.json").read_text())
    assert man["masks"] is True
    assert man["label_map"] == {"background": 0, "spore": 1, "hyphae": 2, "mycelium": 3}
    assert man["mask_coverage_threshold"] == pytest.approx(COVERAGE_THRESHOLD, abs=1e-6)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["mask_file_name"] == f"masks/{r['index']:06d}.mask.png"
        assert r["instance_file_name"] == f"masks/{r['index']:06d}.inst.png"
        labels = read_png((out / r["mask_file_name"]).read_bytes())
        inst = read_png((out / r["instance_file_name"]).read_bytes())
        assert labels.dtype == np.uint8 and inst.dtype == np.uint16 and labels.shape == (SIZE, SIZE)
        assert r["n_instances"] == r["n_structures"] + r["n_overlap"]
        # At 32 px a tiny structure can hide under others (exact counts: test_label_and_instance_semantics).
        assert set(np.unique(inst[inst > 0]).tolist()) <= set(range(1, r["n_instances"] + 1))
    # The split's own metadata (Hugging Face imagefolder) points at the same files from the split folder.
    first = json.loads((out / "train/metadata.jsonl").read_text().splitlines()[0])
    assert (out / "train" / first["mask_file_name"]).resolve() == (out / rows[0]["mask_file_name"]).resolve()
    import pyarrow.parquet as pq

    types = {f.name: str(f.type) for f in pq.read_table(out / "metadata.parquet").schema}
    assert types["mask_file_name"] == types["instance_file_name"] == "string"
    assert types["n_instances"] == "int64"
    # The images are byte-identical to a run without masks; only masks/ and metadata/manifest differ.
    gen(tmp_path / "plain", masks=False)
    plain, masked = tree_hashes(tmp_path / "plain"), tree_hashes(out)
    images = {k: v for k, v in masked.items() if k.endswith(".png") and not k.startswith("masks/")}
    assert images == {k: v for k, v in plain.items() if k.endswith(".png")}
    assert json.loads((tmp_path / "plain/dataset.json").read_text())["masks"] is False


def test_same_masks_for_1_or_2_workers_and_for_parts(with_masks, tmp_path):
    ref = tree_hashes(with_masks)
    gen(tmp_path / "w2", workers=2)
    assert tree_hashes(tmp_path / "w2") == ref
    assert gen(tmp_path / "parts", shard="0/2")["complete"] is False
    gen(tmp_path / "parts", shard="1/2")
    assert tree_hashes(tmp_path / "parts") == ref


def test_resume_redoes_an_image_whose_mask_is_missing(with_masks, tmp_path):
    out = tmp_path / "killed"

    def stop_after(done, total):
        if done == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(out, on_progress=stop_after)
    assert len(list((out / "masks").glob("*.mask.png"))) == 11
    journal = next((out / PROGRESS_DIR).glob("rows-*.jsonl"))
    victim = json.loads(journal.read_text().splitlines()[0])
    (out / "masks" / f"{victim['index']:06d}.inst.png").unlink()  # image and row exist, a mask does not
    image = out / victim["file_name"]
    before = image.stat().st_mtime_ns
    with pytest.raises(Exception, match="different settings"):
        gen(out, masks=False, resume=True)  # masks are part of the settings a resume must repeat
    gen(out, resume=True)
    assert tree_hashes(out) == tree_hashes(with_masks)
    assert image.stat().st_mtime_ns != before  # redone, not trusted


def test_webdataset_carries_the_masks(with_masks, tmp_path):
    out = tmp_path / "wds"
    man = gen(out, fmt="webdataset", samples_per_shard=10)
    assert man["masks"] is True and man["mask_files"]["labels"] == "KEY.mask.png"
    rows = {r["index"]: r for r in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())}
    with tarfile.open(out / "shards/train-000000.tar") as tar:
        names = tar.getnames()
        assert names[:6] == [
            "000000.png", "000000.mask.png", "000000.inst.png", "000000.json", "000000.cls", "000000.txt"
        ]  # fmt: skip
        folder_rows = [json.loads(x) for x in (with_masks / "metadata.jsonl").read_text().splitlines()]
        for name in names:
            key, ext = name.split(".", 1)
            if ext in ("png", "mask.png", "inst.png"):  # the same bytes as the ImageFolder files
                ref = folder_rows[int(key)]["file_name"] if ext == "png" else f"masks/{name}"
                assert tar.extractfile(name).read() == (with_masks / ref).read_bytes(), name
    assert rows[0]["mask_file_name"] == "shards/train-000000.tar#000000.mask.png"
    assert rows[0]["instance_file_name"] == "shards/train-000000.tar#000000.inst.png"
    gen(tmp_path / "wds2", fmt="webdataset", samples_per_shard=10, workers=2)
    assert tree_hashes(tmp_path / "wds2") == tree_hashes(out)


def test_sequence_masks(tmp_path):
    gen(tmp_path / "seq", mode="sequence", num_images=20, seed=1)
    rows = [json.loads(line) for line in (tmp_path / "seq/metadata.jsonl").read_text().splitlines()]
    for r in rows:
        inst = read_png((tmp_path / "seq" / r["instance_file_name"]).read_bytes())
        assert r["n_instances"] == PAPER.sequence.population
        assert set(np.unique(inst[inst > 0]).tolist()) <= set(range(1, r["n_instances"] + 1))
        labels = read_png((tmp_path / "seq" / r["mask_file_name"]).read_bytes())
        stages = {LABELS[c] for c in LABELS if r[f"ratio_{c}"] > 0}
        assert set(np.unique(labels).tolist()) - {0} <= stages and LABELS[r["label"]] in labels


def test_overwrite_keeps_files_it_did_not_write_in_masks(with_masks, tmp_path):
    out = tmp_path / "o"
    gen(out, num_images=3)
    (out / "masks" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="did not write"):
        gen(out, num_images=3, overwrite=True)
    assert (out / "masks" / "notes.txt").is_file()


def test_cli_masks_and_refusals(tmp_path):
    from fungalzsl.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["generate", "--out", str(tmp_path / "c"), "-n", "3", "--size", "32", "-j", "1", "--masks"]
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "c/masks").glob("*.png"))) == 6
    res = runner.invoke(
        app, ["generate", "--out", str(tmp_path / "d"), "-n", "3", "--masks", "--renderer", "matplotlib"]
    )
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "--renderer fast" in err
    assert "--masks" in runner.invoke(app, ["generate", "--help"]).output
