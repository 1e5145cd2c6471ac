"""Redraw docs/img/styles.png: the imaging styles (--style), with real development images beside them.

Rows: spore, hyphae and mycelium as micrographs; mycelium as colonies (--style colony); and, for
comparison, real images of data/real-dev/ (one per class and source). Run from the repository root:
.venv/bin/python docs/img/make_styles.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from fungalzsl.synth import load_preset, make_image, plan_classes, with_overrides

SIZE, COLS, GAP, LABEL_W = 128, 6, 4, 150
ROOT = Path(__file__).resolve().parents[2]
REAL = ["hyphae_hyphaltips_01", "hyphae_hyphaltips_03", "mycelium_hyphaltips_01", "mycelium_obaranetwork_02",
        "spore_mycolog_01", "spore_napariconidie_01"]  # fmt: skip


def _styled(style: str, label: str, seed: int) -> list[Image.Image]:
    preset = with_overrides(load_preset("paper"), style=style)
    jobs = [j for j in plan_classes(preset, 3 * COLS) if j.label == label]
    return [Image.fromarray(make_image(preset, seed, j, SIZE)[0]) for j in jobs]


def _square(path: Path) -> Image.Image:
    im = Image.open(path).convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main() -> None:
    rows = [(f"micrograph: {c}", _styled("micrograph", c, 0)) for c in ("spore", "hyphae", "mycelium")]
    rows.append(("colony: mycelium", _styled("colony", "mycelium", 1)))
    rows.append(("real (data/real-dev)", [_square(ROOT / "data" / "real-dev" / f"{n}.png") for n in REAL]))
    sheet = Image.new("RGB", (LABEL_W + COLS * (SIZE + GAP), len(rows) * (SIZE + GAP)), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for r, (label, ims) in enumerate(rows):
        y = r * (SIZE + GAP)
        draw.text((8, y + SIZE // 2 - 6), label, fill=(20, 20, 20))
        for c, im in enumerate(ims[:COLS]):
            sheet.paste(im, (LABEL_W + c * (SIZE + GAP), y))
    out = Path(__file__).with_name("styles.png")
    sheet.quantize(256).save(out, optimize=True)  # 256 colours keep the sheet small
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
