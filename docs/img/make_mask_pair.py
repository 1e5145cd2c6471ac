"""Redraw docs/img/mask_pair.png: for one image per class, the image, its class-label mask and its
instance-id mask (what ``fungalzsl generate --masks`` writes), coloured for viewing.

Run from the repository root: .venv/bin/python docs/img/make_mask_pair.py
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fungalzsl.synth import load_preset, make_image, make_masks, plan_classes

SIZE, GAP, HEAD = 192, 4, 18
# Label colours: background black, spore yellow, hyphae cyan, mycelium magenta (far from the image
# colours, so the overlap structures stand out).
LABEL_RGB = np.array([[0, 0, 0], [250, 220, 40], [40, 200, 230], [220, 50, 200]], np.uint8)


def instance_rgb(inst: np.ndarray) -> np.ndarray:
    """A distinct hue per instance id (golden-ratio steps), black background."""
    n = int(inst.max())
    lut = np.zeros((n + 1, 3), np.uint8)
    for i in range(1, n + 1):
        lut[i] = [round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 1.0)]
    return lut[inst]


def main() -> None:
    paper = load_preset("paper")
    jobs = plan_classes(paper, 12)
    # One image per class, choosing ones that show the overlap (spores in hyphae, hyphae in mycelium).
    picks = []
    for name in paper.class_names:
        cands = [j for j in jobs if j.label == name]
        with_overlap = [j for j in cands if make_image(paper, 0, j, 32)[1]["n_overlap"] > 0]
        picks.append((with_overlap or cands)[0])
    heads = ["image", "labels (mask.png)", "instances (inst.png)"]
    w = 3 * SIZE + 2 * GAP
    h = HEAD + len(picks) * (SIZE + GAP)
    sheet = Image.new("RGB", (w, h), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(heads):
        draw.text((c * (SIZE + GAP) + 4, 3), text, fill=(20, 20, 20))
    for r, job in enumerate(picks):
        rgb, _ = make_image(paper, 0, job, SIZE)
        labels, inst = make_masks(paper, 0, job, SIZE)
        y = HEAD + r * (SIZE + GAP)
        for c, arr in enumerate((rgb, LABEL_RGB[labels], instance_rgb(inst))):
            sheet.paste(Image.fromarray(arr), (c * (SIZE + GAP), y))
        draw.text((4, y + 4), job.label, fill=(20, 20, 20))
    out = Path(__file__).with_name("mask_pair.png")
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
