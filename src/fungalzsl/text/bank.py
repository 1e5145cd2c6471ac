"""The ``bank`` backend: fluent class descriptions composed from a curated knowledge bank, no model needed.

Why it exists: no instruction-tuned LLM ships in an installable package, yet training needs a description
set. The bank (``banks/fungi.yaml``) holds true, class-specific attributes as noun and verb phrases; the
composer draws a few of them (favouring the prompt's aspect) and pours them into one of many sentence
templates, including the paper's form "[class] characterized by [characteristics]". It is honest about what
it is: records say ``backend="bank"``, ``model="<bank name>"``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fungalzsl.errors import fail
from fungalzsl.io import read_text_file

ASPECTS = (
    "colour",
    "shape",
    "size",
    "branching",
    "septation",
    "habit",
    "microscopy",
    "development",
    "function",
)
# A prompt's aspect (prompts/paper.yaml) -> the bank aspects it favours.
PROMPT_ASPECTS: dict[str, tuple[str, ...]] = {
    "general": ASPECTS,
    "colour": ("colour", "microscopy"),
    "structure": ("shape", "size", "branching", "septation", "habit"),
    "development": ("development",),
    "function": ("function",),
}

# Openers take noun phrases: {S} subject, {N} the class name bare (paper form), {a} {b} {c} noun phrases.
OPENERS_NP = (
    ("{N} characterized by {a}, {b} and {c}.", 3),
    ("{N} characterized by {a} and {b}.", 2),
    ("{N}, characterized by {a}.", 1),
    ("{S} characterized by {a}, {b} and {c}.", 3),
    ("{S} is characterized by {a} and {b}.", 2),
    ("{S} is recognisable by {a} and {b}.", 2),
    ("{S} shows {a}, together with {b}.", 2),
    ("{S} displays {a}, {b} and {c}.", 3),
    ("Under the microscope, {s} appears with {a} and {b}.", 2),
    ("In this image, {s} stands out through {a} and {b}.", 2),
    ("Key features of {s}: {a}, {b} and {c}.", 3),
    ("{S} can be identified by {a}.", 1),
    ("Typical of {s} are {a} and {b}.", 2),
    ("Look for {a} and {b}: these mark {s}.", 2),
    ("What defines {s} is {a}, along with {b}.", 2),
    ("A close view of {s} reveals {a} and {b}.", 2),
    ("{S} is marked by {a}; it also shows {b}.", 2),
    ("Seen in a micrograph, {s} presents {a} and {b}.", 2),
    ("{A} and {b} distinguish {s}.", 2),
    ("{A}, {b} and {c} are the hallmarks of {s}.", 3),
    ("The signature of {s} is {a}.", 1),
    ("{S}: {a}, {b}, and {c}.", 3),
)
# Openers that take one verb phrase {v}.
OPENERS_VP = (
    "{S} {v}.",
    "Under the microscope, {s} {v}.",
    "In this growth stage, {s} {v}.",
    "At this point in its life cycle, {s} {v}.",
)
# Follow-up sentences, each with one verb phrase (subject "it"/"this stage").
FOLLOW_VP = (
    "It {v}.",
    "It also {v}.",
    "In addition, it {v}.",
    "This stage {v}.",
    "Typically, it {v}.",
    "Biologically, it {v}.",
    "Moreover, it {v}.",
    "Seen up close, it {v}.",
)
# Development noun phrases name a stage ("the earliest stage of fungal growth"), not a visible feature:
# they get identity sentences instead of feature lists.
OPENERS_DEV = (
    "{S} represents {d}.",
    "{S} is {d}.",
    "{S} marks {d} and is characterized by {a}.",
    "As {d}, {s} shows {a}.",
)
FOLLOW_DEV = ("It represents {d}.", "This stage is {d}.", "In the life cycle, it is {d}.")
FOLLOW_NP = (
    "It is further characterized by {a}.",
    "Another feature is {a}.",
    "It also shows {a}.",
    "Note {a} as well.",
    "Further clues are {a} and {b}.",
    "One also sees {a}.",
)


@dataclass
class Trait:
    aspect: str
    np: list[str]
    vp: list[str]


@dataclass
class BankClass:
    name: str
    names: list[str]
    subjects: list[str]
    traits: list[Trait]
    exclusive_terms: list[str] = field(default_factory=list)


@dataclass
class Bank:
    name: str
    classes: dict[str, BankClass]

    def merged(self, other: Bank) -> Bank:
        """This bank with ``other``'s classes added (or replacing same-named ones)."""
        return Bank(name=f"{self.name}+{other.name}", classes={**self.classes, **other.classes})


def _str_list(v: Any, where: str, required: bool = True) -> list[str]:
    if v is None and not required:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise fail(f"{where} must be a non-empty list of strings", "fix the bank file")
    return [x.strip() for x in v]


def parse_bank(data: Any, source: str) -> Bank:
    """Validate a bank mapping (see banks/fungi.yaml) into a :class:`Bank`; one-line errors name the field."""
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict) or not data["classes"]:
        raise fail(
            f"{source} has no 'classes' mapping", "see src/fungalzsl/text/banks/fungi.yaml for the layout"
        )
    classes: dict[str, BankClass] = {}
    for cname, spec in data["classes"].items():
        where = f"{source}: classes.{cname}"
        if not isinstance(spec, dict):
            raise fail(f"{where} must be a mapping", "fix the bank file")
        traits = []
        for i, t in enumerate(spec.get("traits") or []):
            tw = f"{where}.traits[{i}]"
            if not isinstance(t, dict) or t.get("aspect") not in ASPECTS:
                raise fail(f"{tw}.aspect must be one of {', '.join(ASPECTS)}", "fix the bank file")
            np_, vp_ = _str_list(t.get("np"), f"{tw}.np", False), _str_list(t.get("vp"), f"{tw}.vp", False)
            if not np_ and not vp_:
                raise fail(f"{tw} needs 'np' or 'vp' phrases", "fix the bank file")
            traits.append(Trait(aspect=t["aspect"], np=np_, vp=vp_))
        if sum(1 for t in traits if t.np) < 3:
            raise fail(f"{where} needs at least 3 traits with 'np' phrases", "add more traits")
        names = _str_list(spec.get("names", [cname]), f"{where}.names")
        classes[str(cname)] = BankClass(
            name=str(cname),
            names=names if str(cname) in names else [str(cname), *names],
            subjects=_str_list(spec.get("subjects", [f"the {cname} stage"]), f"{where}.subjects"),
            traits=traits,
            exclusive_terms=_str_list(spec.get("exclusive_terms"), f"{where}.exclusive_terms", False),
        )
    return Bank(name=str(data.get("name") or Path(source).stem), classes=classes)


# Banks shipped beside fungi.yaml, by name: ``--bank novel`` adds the test-only stages (synth.stages).
SHIPPED_BANKS = ("novel", "visible")


def shipped_file(name: str) -> Path:
    """A file shipped in ``fungalzsl/text/banks`` (a bank, or the novel stages' second description set)."""
    return Path(str(resources.files("fungalzsl") / "text" / "banks" / name))


def load_bank(path: str | Path | None = None) -> Bank:
    """The shipped fungi bank, plus the classes of ``path`` (a user's YAML bank, or a shipped bank's
    name from :data:`SHIPPED_BANKS`) when given."""
    shipped_path = resources.files("fungalzsl") / "text" / "banks" / "fungi.yaml"
    bank = parse_bank(yaml.safe_load(shipped_path.read_text(encoding="utf-8")), "fungi.yaml")
    if path is None:
        return bank
    p = Path(path)
    if str(path) in SHIPPED_BANKS and not p.exists():
        p = shipped_file(f"{path}.yaml")
    if not p.is_file():
        raise fail(f"bank file {p} does not exist", "check the --bank path")
    try:
        data = yaml.safe_load(read_text_file(p, "bank file"))
    except yaml.YAMLError as e:
        raise fail(f"{p} is not valid YAML ({str(e).splitlines()[0]})", "fix the bank file") from None
    return bank.merged(parse_bank(data, str(p)))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class BankComposer:
    """Composes descriptions for one bank. Pure function of (class, aspect, seed, word bounds)."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def compose(self, cls: str, aspect: str, seed: int, min_words: int = 10, max_words: int = 70) -> str:
        """One description of ``cls`` focused on ``aspect``; tries a few shapes to land inside the word bounds."""
        if cls not in self.bank.classes:
            raise fail(
                f"the bank has no class '{cls}' (it knows: {', '.join(self.bank.classes)})",
                "add the class with a YAML bank file: --bank FILE",
            )
        rng = random.Random(seed)
        text = ""
        for _ in range(20):
            text = self._one(self.bank.classes[cls], aspect, rng, min_words, max_words)
            if min_words <= len(text.split()) <= max_words:
                return text
        return text  # the caller's length filter reports it

    def _one(self, bc: BankClass, aspect: str, rng: random.Random, min_w: int, max_w: int) -> str:
        focus = set(PROMPT_ASPECTS.get(aspect, ASPECTS))
        # Focused traits first (shuffled), then the rest, so the prompt's aspect leads the description.
        traits = list(bc.traits)
        rng.shuffle(traits)
        traits.sort(key=lambda t: t.aspect not in focus)
        np_traits = [t for t in traits if t.np and t.aspect != "development"]
        dev_traits = [t for t in traits if t.np and t.aspect == "development"]
        vp_traits = [t for t in traits if t.vp]
        subject = rng.choice(bc.subjects)
        fill = {"S": _cap(subject), "s": subject, "N": _cap(bc.name)}
        used: set[int] = set()

        def take_np() -> str:
            for t in np_traits:
                if id(t) not in used:
                    used.add(id(t))
                    return rng.choice(t.np)
            return rng.choice(rng.choice(np_traits).np)

        def take_vp() -> str | None:
            for t in vp_traits:
                if id(t) not in used:
                    used.add(id(t))
                    return rng.choice(t.vp)
            return None

        def take_dev() -> str | None:
            for t in dev_traits:
                if id(t) not in used:
                    used.add(id(t))
                    return rng.choice(t.np)
            return None

        sentences: list[str] = []
        dev_first = aspect == "development" and rng.random() < 0.6
        if dev_traits and (dev_first or (aspect == "general" and rng.random() < 0.15)) and (d := take_dev()):
            sentences.append(rng.choice(OPENERS_DEV).format(d=d, a=take_np(), **fill))
        elif vp_traits and rng.random() < 0.25:
            v = take_vp()
            sentences.append(rng.choice(OPENERS_VP).format(v=v, **fill))
        else:
            tpl, k = rng.choice(OPENERS_NP)
            nps = [take_np() for _ in range(k)]
            sentences.append(
                tpl.format(a=nps[0], A=_cap(nps[0]), b=nps[-1 if k < 2 else 1], c=nps[-1], **fill)
            )
        # A target length inside the bounds; add follow-ups until the next one would overshoot it.
        target = rng.randint(min(max(min_w, 12), max_w), max(min(max_w, 55), min(max(min_w, 12), max_w)))
        while len(" ".join(sentences).split()) < target:
            roll = rng.random()
            if roll < 0.12 and (d := take_dev()) is not None:
                nxt = rng.choice(FOLLOW_DEV).format(d=d)
            elif roll < 0.7 and (v := take_vp()) is not None:
                nxt = rng.choice(FOLLOW_VP).format(v=v)
            else:
                tpl = rng.choice(FOLLOW_NP)
                nxt = tpl.format(a=take_np(), b=take_np()) if "{b}" in tpl else tpl.format(a=take_np())
            if len(" ".join([*sentences, nxt]).split()) > max_w:
                break
            sentences.append(nxt)
        # "It also is ..." reads badly; English puts the adverb after "is".
        return " ".join(_cap(s) for s in sentences).replace(" also is ", " is also ")


def compose_set(
    bank: Bank, classes: list[str], per_class: int, seed: int = 0, set_name: str = ""
) -> list[dict]:
    """``per_class`` distinct descriptions of each class, composed from ``bank`` (records of a
    description set, deterministic in ``seed``): what ``fungalzsl novel`` scores new stages with."""
    composer, records = BankComposer(bank), []
    for cls in classes:
        seen: set[str] = set()
        for k in range(per_class * 20):
            if len(seen) == per_class:
                break
            text = composer.compose(cls, "general", seed * 1_000_003 + k)
            if text in seen:
                continue
            seen.add(text)
            records.append(
                {"class": cls, "text": text, "set": set_name or bank.name, "backend": "bank",
                 "model": bank.name, "seed": seed * 1_000_003 + k}
            )  # fmt: skip
    return records
