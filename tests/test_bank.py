"""The offline `bank` backend: deterministic, diverse, in bounds, and true to each class."""

from __future__ import annotations

import random
import re

import pytest

from fungalzsl.errors import FungalError
from fungalzsl.text.bank import BankComposer, load_bank
from fungalzsl.text.cleanup import words
from fungalzsl.text.generate import generate_descriptions
from fungalzsl.text.records import load_description_set

BANK = load_bank()
COMPOSER = BankComposer(BANK)
ASPECTS = ["general", "colour", "structure", "development", "function"]


def _sample(cls: str, n: int, min_w: int = 10, max_w: int = 70) -> list[str]:
    return [COMPOSER.compose(cls, ASPECTS[i % 5], i, min_w, max_w) for i in range(n)]


def _term_re(term: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(term) + r"\b", re.IGNORECASE)


def test_same_seed_same_set_other_seed_other_set(tmp_path):
    a = generate_descriptions("bank", per_class=30, out=tmp_path / "a.jsonl", seed=7)
    b = generate_descriptions("bank", per_class=30, out=tmp_path / "b.jsonl", seed=7)
    c = generate_descriptions("bank", per_class=30, out=tmp_path / "c.jsonl", seed=8)
    ta, tb, tc = (load_description_set(r.out).by_class for r in (a, b, c))
    assert ta == tb
    assert all(set(ta[k]).isdisjoint(tc[k]) or len(set(ta[k]) & set(tc[k])) < 3 for k in ta)


@pytest.mark.parametrize("cls", ["spore", "hyphae", "mycelium"])
def test_hundreds_of_distinct_descriptions_with_low_overlap(cls):
    texts = _sample(cls, 600)
    assert len(set(texts)) >= 550
    # Mean word-3-gram Jaccard between random pairs: templates share connective words, not whole texts.
    rng = random.Random(0)

    def grams(t: str) -> set[str]:
        w = [x.lower() for x in words(t)]
        return {" ".join(w[i : i + 3]) for i in range(len(w) - 2)}

    pairs = [rng.sample(texts, 2) for _ in range(300)]
    mean_j = sum(len(grams(a) & grams(b)) / len(grams(a) | grams(b)) for a, b in pairs) / len(pairs)
    assert mean_j < 0.15, mean_j


@pytest.mark.parametrize(("lo", "hi"), [(10, 70), (20, 40), (30, 35)])
def test_every_description_within_word_bounds(lo, hi, tmp_path):
    rep = generate_descriptions(
        "bank", per_class=40, out=tmp_path / "b.jsonl", min_words=lo, max_words=hi, seed=1
    )
    ds = load_description_set(rep.out)
    assert set(ds.classes) == {"spore", "hyphae", "mycelium"}
    for texts in ds.by_class.values():
        assert len(texts) == 40
        assert all(lo <= len(t.split()) <= hi for t in texts)


def test_no_class_describes_another_class_exclusive_traits():
    samples = {c: _sample(c, 400) for c in BANK.classes}
    for cls, texts in samples.items():
        own_terms = [_term_re(t) for t in BANK.classes[cls].exclusive_terms]
        # The exclusive terms are real features of the class: most of its own descriptions use some.
        assert sum(any(r.search(t) for r in own_terms) for t in texts) / len(texts) > 0.4
        for other, bc in BANK.classes.items():
            if other == cls:
                continue
            for term in bc.exclusive_terms:
                leaks = [t for t in texts if _term_re(term).search(t)]
                assert not leaks, f"{cls} description uses {other}-only term {term!r}: {leaks[0]}"


def test_colours_follow_the_synthetic_images_ramps():
    for cls, must, never in [
        ("spore", {"yellow", "golden"}, {"red"}),
        ("hyphae", {"orange"}, {"yellow", "red"}),
        ("mycelium", {"red", "crimson"}, {"yellow"}),
    ]:
        texts = [COMPOSER.compose(cls, "colour", s) for s in range(200)]
        vocab = [{w.lower() for w in words(t)} for t in texts]
        assert sum(bool(v & must) for v in vocab) / len(texts) > 0.6
        assert not any(v & never for v in vocab)


def test_prompt_aspect_steers_the_opening():
    # A function-focused prompt should put a function trait first far more often than a colour prompt.
    func_np = {p for t in BANK.classes["mycelium"].traits if t.aspect == "function" for p in t.np + t.vp}
    first = [COMPOSER.compose("mycelium", "function", s).split(".")[0] for s in range(200)]
    colour_first = [COMPOSER.compose("mycelium", "colour", s).split(".")[0] for s in range(200)]
    hit = sum(any(p in f for p in func_np) for f in first)
    base = sum(any(p in f for p in func_np) for f in colour_first)
    assert hit > 150 and hit > 3 * base


def test_user_bank_adds_a_class(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "name: extra\nclasses:\n  sporangium:\n    names: [sporangium, sporangia]\n"
        "    subjects: [a sporangium]\n    traits:\n"
        "      - {aspect: shape, np: [a round sac on a stalk], vp: [sits on top of an upright stalk]}\n"
        "      - {aspect: function, np: [a store of many spores], vp: [releases spores when it bursts]}\n"
        "      - {aspect: colour, np: [a dark brown to black wall], vp: [turns dark as it matures]}\n"
    )
    from fungalzsl.text.backends import BackendOptions

    rep = generate_descriptions(
        "bank", classes=["sporangium", "spore"], per_class=10, out=tmp_path / "s.jsonl",
        min_words=5, max_words=40, options=BackendOptions(bank_path=str(extra)),
    )  # fmt: skip
    ds = load_description_set(rep.out)
    assert len(ds.by_class["sporangium"]) == 10 and len(ds.by_class["spore"]) == 10
    assert all(
        "stalk" in t or "spores" in t or "brown" in t or "dark" in t for t in ds.by_class["sporangium"]
    )
    assert {r["model"] for r in ds.records} == {"fungi-bank-v1+extra"}


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("classes: []\n", "no 'classes'"),
        ("classes:\n  x:\n    traits:\n      - {aspect: taste, np: [a]}\n", "aspect must be one of"),
        ("classes:\n  x:\n    traits:\n      - {aspect: colour, np: [red thing]}\n", "at least 3 traits"),
        ("classes: [\n", "not valid YAML"),
    ],
)
def test_bad_bank_file_is_one_line_error(tmp_path, yaml_text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(FungalError) as e:
        load_bank(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_class_without_bank_entry_is_clear(tmp_path):
    with pytest.raises(FungalError, match=r"no class 'conidium'.*--bank"):
        generate_descriptions("bank", classes=["conidium"], per_class=2, out=tmp_path / "x.jsonl")
