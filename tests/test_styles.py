"""Imaging styles (--style micrograph|colony|mixed): recorded, deterministic, masks aligned, class
carried by structure rather than colour, and the paper style untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fungalzsl.errors import FungalError
from fungalzsl.synth import (
    generate_dataset,
    load_preset,
    make_image,
    make_masks,
    plan_classes,
    with_overrides,
)
from fungalzsl.synth.layout import PROGRESS_DIR
from fungalzsl.synth.micro import grow_filaments
from fungalzsl.synth.style import MIXED_WEIGHTS, STYLE_ALGORITHM, resolve_style

N, SIZE = 9, 48


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and PROGRESS_DIR not in p.parts
    }


def gen(out: Path, style: str = "micrograph", **kw):
    kw.setdefault("num_images", N)
    kw.setdefault("size", SIZE)
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return generate_dataset(out, "paper", seed=7, style=style, masks=True, **kw)


@pytest.fixture(scope="module")
def micro_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro")
    gen(out)
    return out


def styled(style: str):
    return with_overrides(load_preset("paper"), style=style)


def test_the_paper_style_is_written_as_no_key_so_paper_presets_keep_their_hash():
    paper = load_preset("paper")
    assert "style" not in paper.to_dict()["variation"]
    assert with_overrides(paper, style="paper").hash() == paper.hash()
    micro = styled("micrograph")
    assert micro.to_dict()["variation"]["style"] == "micrograph" and micro.hash() != paper.hash()


def test_a_styled_dataset_records_its_style_per_image_and_in_the_manifest(micro_set):
    manifest = json.loads((micro_set / "dataset.json").read_text())
    assert manifest["style"] == "micrograph"
    assert manifest["preset"]["settings"]["variation"]["style"] == "micrograph"
    rows = [json.loads(line) for line in (micro_set / "metadata.jsonl").read_text().splitlines()]
    assert {r["style"] for r in rows} == {"micrograph"}
    assert {r["imaging"] for r in rows} <= {"brightfield", "phase", "darkfield"}
    assert {r["stain"] for r in rows} <= {"unstained", "koh", "cotton-blue", "pink"}


def test_same_bytes_for_1_or_2_workers_for_shards_and_after_resume(micro_set, tmp_path):
    gen(tmp_path / "two", workers=2)
    assert tree_hashes(tmp_path / "two") == tree_hashes(micro_set)
    for part in ("0/2", "1/2"):
        gen(tmp_path / "parts", shard=part)
    assert tree_hashes(tmp_path / "parts") == tree_hashes(micro_set)

    def stop_after(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(tmp_path / "cut", on_progress=stop_after)
    gen(tmp_path / "cut", resume=True)
    assert tree_hashes(tmp_path / "cut") == tree_hashes(micro_set)


def test_resuming_with_another_style_is_refused(micro_set, tmp_path):
    def stop_after(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen(tmp_path / "cut", on_progress=stop_after)
    with pytest.raises(Exception, match="settings"):
        gen(tmp_path / "cut", style="mixed", resume=True)


def test_mixed_draws_each_image_exactly_as_its_chosen_style_does():
    preset, jobs = styled("mixed"), plan_classes(load_preset("paper"), 60)
    chosen = [resolve_style("mixed", j.label, 7, j.index) for j in jobs]
    assert set(chosen) == set(MIXED_WEIGHTS)
    assert all(c != "colony" for c, j in zip(chosen, jobs) if j.label != "mycelium")
    for style in ("paper", "micrograph", "colony"):
        j = next(j for c, j in zip(chosen, jobs) if c == style)
        rgb, row = make_image(preset, 7, j, 40)
        alone, _ = make_image(styled(style), 7, j, 40)
        assert row["style"] == style and np.array_equal(rgb, alone)


def test_colony_style_draws_spore_and_hyphae_as_micrographs_and_mycelium_as_colonies():
    preset = styled("colony")
    rows = {j.label: make_image(preset, 1, j, 32)[1] for j in plan_classes(preset, 3)}
    assert rows["spore"]["style"] == rows["hyphae"]["style"] == "micrograph"
    assert rows["mycelium"]["style"] == "colony" and rows["mycelium"]["imaging"] in ("plate", "grain")


def test_a_classifier_on_mean_colour_alone_is_near_chance_on_micrographs():
    """Field, stain, illumination and exposure come from a stream that never sees the class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    preset = styled("micrograph")
    jobs = plan_classes(preset, 90)
    x = np.array([make_image(preset, 1, j, 40)[0].reshape(-1, 3).mean(0) / 255 for j in jobs])
    y = np.array([j.label_id for j in jobs])
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=5).mean()
    assert accuracy < 0.5  # chance is 1/3; the paper palette gives ~0.67 here, and 1.0 with more pixels


def _clean_optics(monkeypatch):
    """Optics without camera or artefacts: a flat field, so a structure's pixels stand out."""
    import fungalzsl.synth.optics as optics

    real = optics.sample_optics

    def clean(rng):
        o = real(rng)
        return dataclasses.replace(
            o, defocus_share=0.0, soft_sigma=0.0, illumination=(0.0, 0.0, 0.0), noise_sd=0.0,
            jpeg_quality=0, debris=0, bubbles=0, grid=None, scale_bar=-1, exposure=0.5,
            halo_alpha=0.0, wall=o.background * 0.2, lumen=o.background * 0.5,
        )  # fmt: skip

    monkeypatch.setattr(optics, "sample_optics", clean)


@pytest.mark.parametrize("style", ["micrograph", "colony"])
def test_masks_align_with_the_drawn_structures(style, monkeypatch):
    _clean_optics(monkeypatch)
    preset = styled(style)
    labels_seen = {}
    for j in plan_classes(preset, 12):
        rgb, row = make_image(preset, 2, j, 64)
        labels, instances = make_masks(preset, 2, j, 64)
        fg = labels > 0
        assert np.array_equal(fg, instances > 0)
        labels_seen.setdefault(j.label, set()).update(np.unique(labels).tolist())
        if row["style"] == "colony":
            # The colony's body is drawn exactly inside its mask; the plate around it is not labelled.
            assert fg.mean() > 0.01 and np.abs(rgb[fg].mean(0) - rgb[~fg].mean(0)).max() > 10
            continue
        field = np.median(rgb[~fg].reshape(-1, 3), axis=0) if (~fg).any() else None
        if field is None or fg.sum() < 5:
            continue
        diff = np.abs(rgb.astype(int) - field).max(axis=2)
        assert (diff[fg] > 3).mean() >= 0.9  # labelled pixels show a structure
        assert (fg[diff > 40]).mean() >= 0.9  # and what clearly differs from the field is labelled
    assert labels_seen["spore"] <= {0, 1} and 1 in labels_seen["spore"]
    if style == "micrograph":
        assert labels_seen["hyphae"] <= {0, 1, 2} and 2 in labels_seen["hyphae"]
    assert labels_seen["mycelium"] <= {0, 2, 3} and 3 in labels_seen["mycelium"]


def test_filaments_are_continuous_curves_that_branch():
    rng = np.random.default_rng(0)
    seg, width, owner, level = grow_filaments(
        rng, np.full((3, 2), 0.5), np.zeros(3), np.full(3, 0.02), np.full(3, 30), np.arange(3),
        step_len=0.02, curvature=0.1, branch_p=0.2,
    )  # fmt: skip
    assert np.allclose(np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]), 0.02, atol=1e-5)
    ends = {(round(float(a), 5), round(float(b), 5)) for a, b in seg[:, 2:]}
    starts = [(round(float(a), 5), round(float(b), 5)) for a, b in seg[:, :2]]
    assert all(s in ends or s == (0.5, 0.5) for s in starts)  # every segment grows from a tip
    assert level.max() >= 1 and (width[level >= 1] < 0.02).all() and set(owner.tolist()) == {0, 1, 2}


def test_styles_refuse_sequences_and_matplotlib_in_one_line(tmp_path):
    from fungalzsl.cli import app

    runner = CliRunner()
    for extra in (["--mode", "sequence"], ["--renderer", "matplotlib"], []):
        style = "bogus" if not extra else "micrograph"
        result = runner.invoke(
            app, ["generate", "--out", str(tmp_path / "x"), "-n", "3", "--style", style, *extra]
        )
        assert result.exit_code == 2
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_a_pipeline_config_chooses_the_style_and_keys_its_stage_by_it(tmp_path):
    from fungalzsl.synth.settings import load_generate_settings

    config = tmp_path / "c.yaml"
    micro = load_generate_settings(config, {"preset": "paper", "style": "micrograph", "num_images": 6})
    paper = load_generate_settings(config, {"preset": "paper", "num_images": 6})
    assert micro.preset.variation.style == "micrograph" and paper.preset.variation.style == "paper"
    assert micro.settings["style_algorithm"] == STYLE_ALGORITHM and "style_algorithm" not in paper.settings
    assert "style" not in paper.settings["preset"]["variation"]
    with pytest.raises(Exception, match="style"):
        load_generate_settings(config, {"preset": "paper", "style": "watercolour"})


def test_styles_refuse_a_preset_with_classes_they_do_not_draw(tmp_path):
    preset = load_preset("paper").to_dict()
    preset["classes"][2]["name"] = "sclerotium"
    preset["classes"][1]["overlap"] = [
        o for o in preset["classes"][1].get("overlap", []) if o["class"] != "mycelium"
    ]
    from fungalzsl.synth import GeneratorPreset

    custom = GeneratorPreset.model_validate(preset)
    with pytest.raises(FungalError, match="sclerotium"):
        generate_dataset(tmp_path / "x", custom, num_images=3, style="micrograph", progress=False)
    assert not (tmp_path / "x").exists()


def _flat_optics(**kw):
    """The camera alone: sample_optics' draws, then no artefacts and the given settings."""
    from fungalzsl.synth.optics import sample_optics

    return dataclasses.replace(sample_optics(np.random.default_rng(0)), soft_sigma=0.0, jpeg_quality=0, **kw)


def test_the_camera_without_noise_is_the_exposed_illumination_field_rounded_to_nearest():
    from fungalzsl.synth.optics import finish

    rgb = np.random.default_rng(1).integers(40, 200, size=(32, 32, 3), dtype=np.uint8)
    tilt, angle, vig, exposure = 0.3, 1.0, 0.4, 0.5
    out = finish(rgb, _flat_optics(noise_sd=0.0, illumination=(tilt, angle, vig), exposure=exposure),
                 np.random.default_rng(2))  # fmt: skip
    c = (np.arange(32) + 0.5) / 32 * 2 - 1
    x, y = c[None, :], c[:, None]
    field = (1 + tilt * (np.cos(angle) * x + np.sin(angle) * y)) * (1 - 0.5 * vig * (x * x + y * y))
    field *= exposure / (rgb.mean() / 255 * field.mean())
    want = np.clip(np.floor(rgb * field[:, :, None] + 0.5), 0, 255)
    # float32 against float64: only values within rounding of a half may differ, and by one level
    assert np.abs(out.astype(int) - want).max() <= 1 and (out != want).mean() < 0.01


def test_the_camera_noise_has_the_drawn_strength_and_a_rank_two_colour_structure():
    from fungalzsl.synth.optics import finish

    rgb = np.full((128, 128, 3), 128, dtype=np.uint8)
    sd = 0.03
    out = finish(rgb, _flat_optics(noise_sd=sd, illumination=(0.0, 0.0, 0.0), exposure=128 / 255),
                 np.random.default_rng(5)).astype(float) - 128  # fmt: skip
    assert abs(out.mean()) < 0.3
    # each channel: luminance (sd) plus colour (≤ 0.4·sd) noise, in 0-255 units
    assert np.all((out.std(axis=(0, 1)) > 0.95 * sd * 255) & (out.std(axis=(0, 1)) < 1.1 * sd * 255 + 0.5))
    # two independent normals per pixel mixed into RGB: the 3x3 covariance has one tiny eigenvalue
    # (only rounding), so a mix of three channels can cancel both sources
    eig = np.linalg.eigvalsh(np.cov(out.reshape(-1, 3).T))
    assert eig[0] < 0.2 and eig[1] > 1.0


def test_photographs_are_up_filtered_huffman_pngs_of_their_pixels_and_paper_images_keep_their_bytes():
    from PIL import Image

    from fungalzsl.synth import encode_png
    from fungalzsl.synth.sample import make_png

    preset = styled("mixed")
    seen = set()
    for j in plan_classes(preset, 12):
        rgb, row = make_image(preset, 3, j, 40)
        png, _ = make_png(preset, 3, j, 40)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), rgb)
        photo = row["style"] != "paper"
        assert png == encode_png(rgb, photo=photo)
        if not photo:  # the paper style's bytes as a paper set writes them
            assert png == make_png(load_preset("paper"), 3, j, 40)[0]
        else:
            assert png != encode_png(rgb)
        seen.add(row["style"])
    assert seen == {"paper", "micrograph", "colony"}


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (40, 40)])
def test_the_photo_png_encoder_is_lossless_valid_and_filters_every_row_up(shape):
    import zlib

    from PIL import Image

    from fungalzsl.synth.render import encode_photo_png

    rgb = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    png = encode_photo_png(rgb)
    Image.open(io.BytesIO(png)).verify()  # signature, chunk CRCs, end chunk (what --resume checks)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), rgb)
    h, w = shape
    idat = png[8 + 25 + 8 : -12 - 4]  # after the signature, IHDR and IDAT's length and type
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 3 * w + 1)
    assert (raw[:, 0] == 2).all()  # filter type Up on every row
    assert np.array_equal(np.cumsum(raw[:, 1:], axis=0, dtype=np.uint8), rgb.reshape(h, 3 * w))


@pytest.mark.parametrize("style", ["micrograph", "colony"])
def test_a_soft_lens_is_the_drawing_box_reduced_and_scaled_back_up_bilinearly(style, monkeypatch):
    """The soft lens (skia's upscale of Pillow's box reduction) gives what Pillow's reduce and
    bilinear resize of the same drawing give, to within rounding. Camera off, to see the drawing."""
    from PIL import Image

    import fungalzsl.synth.colony as colony
    import fungalzsl.synth.optics as optics

    size, soft = 64, {"soft_sigma": 0.0}  # round(2 · 0.016 · 64) = 2: reduced by 2
    real_optics, real_look = optics.sample_optics, colony.sample_look
    monkeypatch.setattr(optics, "sample_optics", lambda rng: dataclasses.replace(real_optics(rng), **soft))
    monkeypatch.setattr(colony, "sample_look", lambda rng: dataclasses.replace(real_look(rng), **soft))
    monkeypatch.setattr(optics, "finish", lambda rgb, look, rng: rgb)
    monkeypatch.setattr(colony, "finish_colony", lambda rgb, look, rng: rgb)
    preset = styled(style)
    for j in plan_classes(preset, 6):
        soft["soft_sigma"] = 0.0
        sharp = make_image(preset, 4, j, size)[0]
        soft["soft_sigma"] = 0.016
        blurred = make_image(preset, 4, j, size)[0].astype(int)
        want = np.asarray(Image.fromarray(sharp).reduce(2).resize((size, size), Image.Resampling.BILINEAR))
        assert np.abs(blurred - want).max() <= 1, j.label
        assert not np.array_equal(blurred, sharp)
