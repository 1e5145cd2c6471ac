"""Generator presets: every number that shapes the synthetic images, validated by pydantic.

A preset is the ``generate:`` section of a YAML file (``configs/paper.yaml`` ships the paper's
settings). Users add classes or change parameters by writing their own file; no code changes.

Units: positions and lengths are fractions of the image side (the canvas is the unit square, y up,
as in the authors' matplotlib code); line widths are points on the paper's reference canvas
(7.7 in at 300 dpi = 2,310 px), so a width of 2 looks the same at 224 px and at 2,310 px."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from fungalzsl.config import load_section, resolve_config_path, validate
from fungalzsl.errors import fail
from fungalzsl.io import sha256_json

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
# Side of the authors' rendered images: a 10x10 in figure whose equal-aspect axes are 7.7 in wide,
# saved at 300 dpi with a tight bounding box.
REFERENCE_PX = 2310
MAX_SIZE = 8192
# The paper's classes in label order: the classes of the shipped ``paper`` preset, and the defaults of
# every stage that needs class names before it has a dataset (describe, the release importers).
PAPER_CLASSES = ("spore", "hyphae", "mycelium")
# Imaging styles (synth.style): the paper's flat drawings, microscope photographs, plate photographs of
# colonies (mycelium; the other classes as micrographs), or a per-image mix of the three.
STYLES = ("paper", "micrograph", "colony", "mixed")


class _Strict(BaseModel):
    # A misspelt key must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hex(v: str) -> str:
    if not _HEX.match(v):
        raise ValueError(f"colour {v!r} must be '#rrggbb'")
    return v.lower()


def _check_range(v: tuple[float, float], name: str) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"{name} range {list(v)} must be [low, high] with low <= high")
    return v


class Branching(_Strict):
    """Randomness of the recursive branches B(L·α^d, W·β^d) (Eq. 3–5), as in the released generator."""

    length_decay: float = Field(0.7, gt=0, le=1, description="α: each level's drawn length is ×α")
    length_jitter: float = Field(0.2, ge=0, le=1, description="σ of the N(1, σ) factor on α")
    sub_length: tuple[float, float] = Field((0.4, 0.6), description="U(a, b) factor for sub-branches")
    temperature_factor_sd: float = Field(0.1, ge=0, le=1, description="σ of the N(1, σ) growth factor")
    width_factor: tuple[float, float] = Field((0.6, 1.0), description="β ~ U(a, b) per level")
    sub_branches: Literal["uniform", "poisson"] = "uniform"
    sub_branches_range: tuple[int, int] = Field((3, 5), description="inclusive, for 'uniform'")
    sub_branches_lambda: float = Field(3.0, gt=0, le=10, description="mean, for 'poisson'")
    min_length: float = Field(0.005, gt=0, le=1, description="branches shorter than this stop")
    max_segments: int = Field(400_000, ge=1, le=5_000_000, description="safety cap per image")

    @field_validator("sub_length", "width_factor")
    @classmethod
    def _unit_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1] <= 1.5):
            raise ValueError(f"range {list(v)} must satisfy 0 < low <= high <= 1.5")
        return v

    @field_validator("sub_branches_range")
    @classmethod
    def _count_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (0 <= v[0] <= v[1] <= 12):
            raise ValueError(f"range {list(v)} must satisfy 0 <= low <= high <= 12")
        return v


class Overlap(_Strict):
    """Structures of another class drawn into this class's images (the paper's stage overlap)."""

    class_: str = Field(alias="class")
    probability: float = Field(0.5, ge=0, le=1, description="chance an image gets any")
    count: tuple[int, int] = Field((1, 2), description="inclusive range when it does")
    colours: Literal["own", "host"] = Field("own", description="that class's colour ramp or the host's")

    @field_validator("count")
    @classmethod
    def _count(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (0 <= v[0] <= v[1] <= 1000):
            raise ValueError(f"count {list(v)} must satisfy 0 <= low <= high <= 1000")
        return v


class ClassSpec(_Strict):
    """θ_k = (N_k, D_k, L_k, W_k) plus the look and the timeline slot of one class."""

    name: str = Field(min_length=1, max_length=64)
    n_structures: int = Field(ge=0, le=1000, description="N_k: structures per image")
    depth: int = Field(0, ge=0, le=20, description="D_k: recursive branching depth (0 = spores only)")
    branch_length: float = Field(0.0, ge=0, le=2, description="L_k: first branch length")
    branch_width: float = Field(2.0, ge=0, le=100, description="W_k: first branch width (points)")
    root_branches: int = Field(0, ge=0, le=100, description="extra branches from each centre")
    spore_radius: float = Field(0.02, ge=0, le=0.5, description="r of the disc F((x, y), r)")
    colours: tuple[str, str] = Field(description="colour ramp start → end, '#rrggbb'")
    time_s: tuple[float, float] = Field(description="slot on the timeline, seconds")
    temperature_K: tuple[float, float] = Field(description="temperature over that slot, kelvin")
    overlap: list[Overlap] = Field(default_factory=list)
    kind: Literal["germinating-spore", "sporulating-mycelium", "budding-yeast"] | None = Field(
        None, description="a drawing of synth.stages instead of discs and branch trees (None: the paper's)"
    )

    @model_serializer(mode="wrap")
    def _paper_kind_unwritten(self, handler: Any) -> dict:
        # The paper's classes have no kind: writing none keeps every preset hash made before kinds.
        data = handler(self)
        if data.get("kind") is None:
            data.pop("kind", None)
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_\-]+$", v):
            raise ValueError(f"class name {v!r} may use letters, digits, '_' and '-' only (it names folders)")
        return v

    @field_validator("colours")
    @classmethod
    def _colours(cls, v: tuple[str, str]) -> tuple[str, str]:
        return (_check_hex(v[0]), _check_hex(v[1]))

    @field_validator("time_s", "temperature_K")
    @classmethod
    def _ranges(cls, v: tuple[float, float]) -> tuple[float, float]:
        if min(v) < 0:
            raise ValueError(f"range {list(v)} must not be negative")
        return _check_range(v, "time/temperature")


class Variation(_Strict):
    """Optional image variation for robustness tests; the defaults are the paper's clean images."""

    palette: Literal["paper", "random"] = "paper"
    background: str = "#ffffff"
    grayscale: bool = False
    noise_sd: float = Field(0.0, ge=0, le=1, description="Gaussian pixel noise σ (fraction of 255)")
    blur_radius: float = Field(0.0, ge=0, le=0.1, description="Gaussian blur σ (fraction of side)")
    style: Literal["paper", "micrograph", "colony", "mixed"] = Field(
        "paper", description="imaging style: the paper's drawings or a photographic look (synth.style)"
    )
    test_style: Literal["same", "paper"] = Field(
        "same",
        description="the test split's style: 'same' as the others, or 'paper' (the paper's own test "
        "images, byte for byte, beside photographic train/val images)",
    )

    @field_validator("background")
    @classmethod
    def _bg(cls, v: str) -> str:
        return v if v == "random" else _check_hex(v)

    @model_serializer(mode="wrap")
    def _paper_style_unwritten(self, handler: Any) -> dict:
        # The paper style is written as the absence of the key, so every dataset, hash and stage key
        # made before styles existed stays exactly as it was.
        data = handler(self)
        if data.get("style") == "paper":
            del data["style"]
        if data.get("test_style") == "same":
            del data["test_style"]
        return data


class Sequence(_Strict):
    """Time-aligned growth sequences (Rani et al., 2025b): one spore population over N frames."""

    frames: int = Field(20, ge=2, le=10_000)
    population: int = Field(12, ge=1, le=1000)
    transition_sd_s: float = Field(6.0, ge=0, le=1000, description="spread of each cell's switch time")


class GeneratorPreset(_Strict):
    """The whole ``generate:`` section."""

    classes: list[ClassSpec] = Field(min_length=1)
    # Classes marked ``test_only: true`` in the YAML: never planned into a dataset (nor written into its
    # manifest or hash); ``fungalzsl novel`` draws them as test images of stages a run never saw.
    test_only: list[ClassSpec] = Field(default_factory=list, exclude=True)
    branching: Branching = Field(default_factory=Branching)
    variation: Variation = Field(default_factory=Variation)
    sequence: Sequence = Field(default_factory=Sequence)
    num_images: int = Field(6000, ge=1, le=2_000_000)  # rows are held in memory for the metadata files
    size: int = Field(224, ge=16, le=MAX_SIZE)
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    timeline_s: float = Field(100.0, gt=0)
    placement: tuple[float, float] = Field((0.2, 0.8), description="centres drawn from U(a, b)²")
    line_alpha: float = Field(0.8, gt=0, le=1)

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(f < 0 for f in v.values()) or abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"split fractions {v} must be non-negative and sum to 1")
        for name in v:
            if not re.match(r"^[A-Za-z0-9_\-]+$", name):
                raise ValueError(f"split name {name!r} may use letters, digits, '_' and '-' only")
        return v

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 <= v[0] <= v[1] <= 1):
            raise ValueError(f"placement {list(v)} must satisfy 0 <= low <= high <= 1")
        return v

    @model_validator(mode="before")
    @classmethod
    def _split_test_only(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            return data
        train, test = [], list(data.get("test_only") or [])
        for c in data["classes"]:
            if isinstance(c, dict) and c.get("test_only"):
                test.append({k: v for k, v in c.items() if k != "test_only"})
            elif isinstance(c, dict) and "test_only" in c:
                train.append({k: v for k, v in c.items() if k != "test_only"})
            else:
                train.append(c)
        return {**data, "classes": train, "test_only": test}

    @model_validator(mode="after")
    def _classes_consistent(self) -> GeneratorPreset:
        names = [c.name for c in self.classes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"class names repeat: {sorted(dup)}")
        test_names = [c.name for c in self.test_only]
        clash = sorted(set(names) & set(test_names) | {n for n in test_names if test_names.count(n) > 1})
        if clash:
            raise ValueError(f"test-only class names repeat or clash with training classes: {clash}")
        for c in self.test_only:
            if c.overlap:
                raise ValueError(f"test-only class {c.name!r} cannot have overlap structures")
        for c in [*self.classes, *self.test_only]:
            for o in c.overlap:
                if o.class_ not in names:
                    raise ValueError(f"class {c.name!r} overlaps with unknown class {o.class_!r}")
                if o.class_ == c.name:
                    raise ValueError(f"class {c.name!r} cannot overlap with itself")
            if c.time_s[1] > self.timeline_s:
                raise ValueError(f"class {c.name!r} time_s ends after the {self.timeline_s:g} s timeline")
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def test_only_names(self) -> list[str]:
        return [c.name for c in self.test_only]

    def spec(self, name: str) -> ClassSpec:
        for c in [*self.classes, *self.test_only]:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The settings that make a dataset (test-only classes left out: they make none of its images)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_full_dict(self) -> dict:
        """:meth:`to_dict` with the test-only classes back in ``classes``, marked: a round trip."""
        data = self.to_dict()
        extra = [{**c.model_dump(mode="json", by_alias=True), "test_only": True} for c in self.test_only]
        data["classes"] = [*data["classes"], *extra]
        return data

    def as_test_set(self, names: list[str]) -> GeneratorPreset:
        """This preset with ``names`` (test-only or training classes) as its classes, all images ``test``."""
        specs = [self.spec(n).model_dump(mode="json", by_alias=True) for n in names]
        for s in specs:
            s["overlap"] = [o for o in s["overlap"] if o["class"] in names]
        data = {**self.to_dict(), "classes": specs, "splits": {"test": 1.0}}
        return validate(GeneratorPreset, data, "test-set settings")

    def hash(self) -> str:
        return sha256_json(self.to_dict())[:16]


def load_preset(name_or_path: str | Path = "paper") -> GeneratorPreset:
    """Load and validate a preset: a shipped name (``paper``) or a YAML file path."""
    path = resolve_config_path(name_or_path)
    data = load_section(path, "generate")
    if not data:
        raise fail(f"{path} has no 'generate:' section", "see configs/paper.yaml for the layout")
    return validate(GeneratorPreset, data, f"preset {path.name}")


def resolve_preset(preset: str | Path | GeneratorPreset, **overrides: object) -> GeneratorPreset:
    """A preset given by name, file or object, with ``overrides`` applied as in :func:`with_overrides`."""
    base = preset if isinstance(preset, GeneratorPreset) else load_preset(preset)
    return with_overrides(base, **overrides)


def with_overrides(preset: GeneratorPreset, **changes: object) -> GeneratorPreset:
    """A copy with top-level or ``variation.*`` fields replaced, re-validated (None means keep)."""
    data = preset.to_full_dict()
    for key, value in changes.items():
        if value is None:
            continue
        if key in Variation.model_fields:
            data["variation"][key] = value
        else:
            data[key] = value
    return validate(GeneratorPreset, data, "settings")
