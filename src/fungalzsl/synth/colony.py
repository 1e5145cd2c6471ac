"""The macro view of mycelium: colonies on agar in a Petri dish, or a mat on grain (``--style colony``).

A colony is one mycelium structure of the scene: a disc (the colony's body) plus the paper's own
branch trees (``geometry.grow_branches``) radiating from its centre, which draw the radial texture of
aerial hyphae and, beyond the disc, the fuzzy margin; the segmentation mask is that disc and those
branches. The body carries concentric growth rings; colony colour (white, cream, grey, green, olive,
black, pink), medium (PDA, MEA, SDA, grain), dish, lighting and camera are drawn per image from the
optics stream. Spore and hyphae images of this style are micrographs (``synth.style``): a plate
photograph cannot show a single spore or hypha.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

from fungalzsl.synth.geometry import Scene, grow_branches
from fungalzsl.synth.optics import _colour, finish
from fungalzsl.synth.preset import Branching
from fungalzsl.synth.render import PixelLayout, _path_bytes

# Aerial hyphae: few, long sub-branches; the paper's decay and width rules otherwise.
_TEXTURE = Branching(
    sub_branches_range=(1, 3), sub_length=(0.5, 0.9), width_factor=(0.7, 1.0), min_length=0.004
)
COLONY_COLOURS = {  # hue, saturation, value ranges of the colony body
    "white": ((0.0, 1.0), (0.0, 0.08), (0.85, 1.0)),
    "cream": ((0.1, 0.16), (0.1, 0.3), (0.8, 0.97)),
    "grey": ((0.0, 1.0), (0.0, 0.1), (0.45, 0.75)),
    "green": ((0.22, 0.45), (0.3, 0.7), (0.3, 0.7)),
    "olive": ((0.13, 0.2), (0.3, 0.6), (0.3, 0.55)),
    "black": ((0.0, 1.0), (0.0, 0.2), (0.05, 0.25)),
    "pink": ((0.93, 1.0), (0.15, 0.4), (0.75, 0.95)),
}
MEDIA = {  # agar colour ranges, as hue, saturation, value
    "pda": ((0.08, 0.14), (0.25, 0.6), (0.6, 0.9)),
    "mea": ((0.06, 0.1), (0.4, 0.75), (0.35, 0.7)),
    "sda": ((0.1, 0.15), (0.1, 0.3), (0.75, 0.95)),
}


@dataclass
class ColonyLook:
    """One plate photograph's look; the camera fields are those :func:`optics.finish` reads."""

    imaging: str  # "plate" or "grain"
    stain: str  # the medium: pda, mea, sda, grain
    background: np.ndarray  # agar (plate) or grain colour
    table: np.ndarray
    body: np.ndarray  # colony colour at the centre
    margin: np.ndarray  # and at its edge
    dish: tuple[float, float, float]  # centre x, y and radius (unit square, y up)
    rings: int
    soft_sigma: float
    illumination: tuple[float, float, float]
    exposure: float
    noise_sd: float
    jpeg_quality: int


def _hsv(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> np.ndarray:
    h, s, v = (rng.uniform(*r) for r in ranges)
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_look(rng: np.random.Generator) -> ColonyLook:
    grain = rng.uniform() < 0.3
    medium = "grain" if grain else str(rng.choice(list(MEDIA)))
    agar = _hsv(rng, ((0.07, 0.12), (0.35, 0.7), (0.35, 0.75))) if grain else _hsv(rng, MEDIA[medium])
    # Mats on grain are white to cream; plate colonies take any of the colony colours.
    colour = str(rng.choice(["white", "cream"] if grain else list(COLONY_COLOURS)))
    body = _hsv(rng, COLONY_COLOURS[colour])
    margin = np.clip(body + rng.uniform(-0.1, 0.25), 0.0, 1.0) if rng.uniform() < 0.6 else body
    return ColonyLook(
        imaging="grain" if grain else "plate",
        stain=medium,
        background=agar,
        table=_hsv(rng, ((0.0, 1.0), (0.0, 0.25), (0.05, 0.95))),
        body=body,
        margin=margin,
        dish=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.62))),
        rings=0 if grain else int(rng.integers(0, 7)),
        soft_sigma=float(rng.uniform(0.001, 0.004)) if rng.uniform() < 0.4 else 0.0,
        illumination=(
            float(rng.uniform(0, 0.3)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 0.7)),
        ),
        exposure=float(rng.uniform(0.3, 0.75)),
        noise_sd=float(rng.uniform(0.003, 0.04)),
        jpeg_quality=int(rng.integers(40, 96)) if rng.uniform() < 0.8 else 0,
    )


def colony_scene(rng: np.random.Generator, look: ColonyLook) -> Scene:
    """One to three colonies in the dish, or two to six mats on grain: disc + radiating hyphae each."""
    if look.imaging == "grain":
        n = int(rng.integers(2, 7))
        centres = rng.uniform(0.1, 0.9, size=(n, 2))
        radius = rng.uniform(0.08, 0.25, size=n)
    else:
        n = 1 if rng.uniform() < 0.75 else int(rng.integers(2, 4))
        cx, cy, dish = look.dish
        big = rng.uniform(0.25, 0.85) * dish if n == 1 else rng.uniform(0.12, 0.35) * dish
        radius = big * rng.uniform(0.8, 1.0, size=n)
        ang, dist = rng.uniform(0, 2 * np.pi, size=n), rng.uniform(0, 1, size=n) * (dish - radius) * (n > 1)
        centres = np.column_stack((cx + dist * np.cos(ang), cy + dist * np.sin(ang)))
    width = np.full(n, rng.uniform(1.0, 3.0))  # points: 0.4-1.2 px at 224 px
    seg, w, owner, level = grow_branches(
        rng, _TEXTURE, centres, radius * 1.3, width, np.full(n, int(rng.integers(2, 4))),
        rng.integers(30, 90, size=n), np.arange(n),
    )  # fmt: skip
    return Scene(
        background=look.background,
        struct_kind=["mycelium"] * n,
        struct_host=np.ones(n, dtype=bool),
        circle_xy=centres,
        circle_r=radius,
        struct_rgb=np.tile(look.body, (n, 1)),
        seg_xy=seg,
        seg_width=w,
        seg_struct=owner,
        seg_level=level,
        line_alpha=0.6,
    )


def _draw_plate(canvas: Any, look: ColonyLook, rng: np.random.Generator, size: int) -> None:
    """Table, dish shadow, agar with a soft radial shading, or a bed of grain kernels."""
    import skia

    canvas.clear(_colour(skia, look.table))
    if look.imaging == "grain":
        canvas.clear(_colour(skia, look.background * 0.6))
        n = int(rng.integers(60, 160))
        xy = rng.uniform(-0.05, 1.05, size=(n, 2)) * size
        r = rng.uniform(0.03, 0.06, size=n) * size
        shade = rng.uniform(0.7, 1.25, size=n)
        paint = skia.Paint(AntiAlias=True)
        for (x, y), rad, k, a in zip(
            xy.tolist(), r.tolist(), shade.tolist(), rng.uniform(0, 180, size=n).tolist()
        ):
            paint.setColor4f(_colour(skia, look.background * k))
            canvas.save()
            canvas.translate(x, y)
            canvas.rotate(a)
            canvas.drawOval(skia.Rect.MakeXYWH(-rad, -0.55 * rad, 2 * rad, 1.1 * rad), paint)
            canvas.restore()
        return
    cx, cy, d = look.dish
    x, y, r = cx * size, (1 - cy) * size, d * size
    canvas.drawCircle(
        x + 0.02 * size,
        y + 0.02 * size,
        r * 1.02,
        skia.Paint(AntiAlias=True, Color4f=_colour(skia, look.table * 0.5, 0.6)),
    )
    agar = skia.Paint(AntiAlias=True)
    agar.setShader(skia.GradientShader.MakeRadial(
        skia.Point(x, y), r, [_colour(skia, look.background).toColor(), _colour(skia, look.background * 0.8).toColor()]
    ))  # fmt: skip
    canvas.drawCircle(x, y, r, agar)


def _draw_rim(canvas: Any, look: ColonyLook, rng: np.random.Generator, size: int) -> None:
    """The dish's wall: a bright outer edge, a darker inner one, a specular arc."""
    import skia

    if look.imaging == "grain":
        return
    cx, cy, d = look.dish
    x, y, r = cx * size, (1 - cy) * size, d * size
    ring = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style)
    for k, rgb, alpha, width in ((1.0, np.ones(3), 0.55, 0.018), (0.965, look.table * 0.4, 0.35, 0.01)):
        ring.setColor4f(_colour(skia, rgb, alpha))
        ring.setStrokeWidth(width * size)
        canvas.drawCircle(x, y, r * k, ring)
    ring.setColor4f(_colour(skia, np.ones(3), 0.6))
    ring.setStrokeWidth(0.008 * size)
    start = float(rng.uniform(0, 360))
    canvas.drawArc(
        skia.Rect.MakeLTRB(x - r * 0.985, y - r * 0.985, x + r * 0.985, y + r * 0.985),
        start,
        float(rng.uniform(30, 110)),
        False,
        ring,
    )


def draw_colony(canvas: Any, scene: Scene, look: ColonyLook, rng: np.random.Generator, size: int) -> None:
    """Plate, colonies (body with growth rings, radial aerial hyphae, margin) and the dish rim."""
    import skia

    _draw_plate(canvas, look, rng, size)
    layout = PixelLayout(scene, size)
    ring = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style)
    hyphae = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style)
    path = skia.Path()
    # Aerial hyphae catch the light: paler than a dark colony, a shade darker than a white one.
    light = np.clip(look.body * 0.5 + 0.5, 0.0, 1.0) if look.body.mean() < 0.7 else look.body * 0.8
    for s in range(len(scene.struct_kind)):
        x, y, r = layout.disc(s)
        body = skia.Paint(
            AntiAlias=True, MaskFilter=skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, 0.04 * r + 0.5)
        )
        body.setShader(skia.GradientShader.MakeRadial(
            skia.Point(x, y), r, [_colour(skia, look.body).toColor(), _colour(skia, look.margin, 0.85).toColor()]
        ))  # fmt: skip
        canvas.drawCircle(x, y, r, body)
        for t in np.sort(rng.uniform(0.15, 0.95, size=look.rings)).tolist():
            ring.setColor4f(
                _colour(skia, light if rng.uniform() < 0.5 else look.body * 0.75, rng.uniform(0.15, 0.4))
            )
            ring.setStrokeWidth(float(r * rng.uniform(0.03, 0.1)))
            canvas.drawCircle(x, y, r * t, ring)
        hyphae.setColor4f(_colour(skia, light, scene.line_alpha))
        for lo, hi, w in layout.groups(s):
            path.readFromMemory(_path_bytes(layout.seg[lo:hi]))
            hyphae.setStrokeCap(skia.Paint.kSquare_Cap if w >= 1.0 else skia.Paint.kButt_Cap)
            hyphae.setStrokeWidth(w)
            canvas.drawPath(path, hyphae)
    _draw_rim(canvas, look, rng, size)


def finish_colony(rgb: np.ndarray, look: ColonyLook, rng: np.random.Generator) -> np.ndarray:
    """The camera (lighting, exposure, noise, JPEG), as for micrographs."""
    return finish(rgb, look, rng)  # type: ignore[arg-type]  (ColonyLook has the camera's fields)
