"""Redraw docs/img/samples.png: generated samples per class, the random palette, and one growth sequence.

Run from the repository root: .venv/bin/python docs/img/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from fungalzsl.synth import load_preset, make_image, plan_classes, plan_sequences, with_overrides

SIZE, COLS, GAP, LABEL_W = 160, 6, 4, 150


def main() -> None:
    paper = load_preset("paper")
    rows: list[tuple[str, list[Image.Image]]] = []
    jobs = plan_classes(paper, COLS * 3)
    for name in paper.class_names:
        ims = [Image.fromarray(make_image(paper, 0, j, SIZE)[0]) for j in jobs if j.label == name]
        rows.append((name, ims))
    rnd = with_overrides(paper, palette="random")
    rows.append(("--palette random", [Image.fromarray(make_image(rnd, 1, j, SIZE)[0]) for j in jobs[:COLS]]))
    seq = with_overrides(paper, num_images=20)
    frames = plan_sequences(seq, 20, seed=3)
    pick = [frames[i] for i in (0, 4, 8, 11, 15, 19)]
    rows.append(
        ("--mode sequence", [Image.fromarray(make_image(seq, 3, j, SIZE, mode="sequence")[0]) for j in pick])
    )

    w = LABEL_W + COLS * (SIZE + GAP)
    h = len(rows) * (SIZE + GAP)
    sheet = Image.new("RGB", (w, h), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for r, (label, ims) in enumerate(rows):
        y = r * (SIZE + GAP)
        draw.text((8, y + SIZE // 2 - 6), label, fill=(20, 20, 20))
        for c, im in enumerate(ims[:COLS]):
            sheet.paste(im, (LABEL_W + c * (SIZE + GAP), y))
    out = Path(__file__).with_name("samples.png")
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
