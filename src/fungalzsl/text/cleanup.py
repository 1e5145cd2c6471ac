"""Clean-up of raw LLM output: strip echoed prompts and chat boilerplate, normalise whitespace, count words,
detect exact and near duplicates (word-shingle MinHash), mask class names.

Why: the authors' released captions all begin with the prompt that produced them (a label leak: the text
says which class it is without describing it), chat models wrap answers in "Sure! Here is ...", and
sampling at temperature 0.9 still repeats itself. Each of these would teach the model the wrong thing.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable

import numpy as np

_WS = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z0-9µ]+(?:[-'][A-Za-z0-9]+)*")
# Chat boilerplate before the answer: "Sure! Here is a description of ...:", "Certainly.", "Here's one:".
_OPENERS = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|absolutely|okay|ok|great question|happy to help)\b[!,.:]*\s*)?"
    r"(?:here(?:'s| is| are)\b[^.:!\n]*[.:!]\s*)?",
    re.IGNORECASE,
)
# Sign-offs after the answer: "I hope this helps!", "Let me know if ...".
_CLOSERS = re.compile(
    r"\s*(?:I hope (?:this|that) helps|Let me know if|Feel free to|Is there anything else)[^\n]*$",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"(\*\*|__|^#+\s*|^\s*(?:[-*•]|\d+[.)])\s+)", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A leading instruction sentence ("Describe the structure of spores ...") is a prompt, echoed or invented by
# the model continuing the pattern (seen in the released captions); it is never a description.
_INSTRUCTION = re.compile(
    r"^(?:describe|explain|discuss|write|focus on|compare|list|summari[sz]e|provide)\b[^.!?]*[.!?]\s*", re.I
)


def normalise_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(text.split())


def _strip_prefix_loose(text: str, prefix: str) -> str:
    """Remove ``prefix`` from the start of ``text`` ignoring case, whitespace and quotes."""
    p = normalise_ws(prefix).strip("\"' ").lower()
    t = text.lstrip("\"' ")
    if p and normalise_ws(t).lower().startswith(p):
        # Walk ``t`` consuming the prefix's characters, skipping whitespace differences.
        i = j = 0
        while j < len(p) and i < len(t):
            if t[i].isspace():
                i += 1
                continue
            if p[j].isspace():
                j += 1
                continue
            i, j = i + 1, j + 1
        return t[i:]
    return text


def clean_text(text: str, prompts: Iterable[str] = ()) -> str:
    """Strip chat boilerplate, markdown, surrounding quotes and any echo of ``prompts``; normalise spaces.

    Repeated to a fixed point: boilerplate and echoes nest ("Sure! **Describe ...** Here is ..."), and
    removing one layer can expose the next; cleaning a clean text changes nothing."""
    t = text.replace("\r", "\n")
    for _ in range(8):
        before = t
        t = _clean_once(t, prompts)
        if t == before:
            break
    return t


def _clean_once(t: str, prompts: Iterable[str]) -> str:
    t = normalise_ws(_MARKDOWN.sub("", t))
    t = _OPENERS.sub("", t, count=1)
    for p in prompts:
        t = _strip_prefix_loose(t, p)
    t = _INSTRUCTION.sub("", t, count=1)
    t = t.lstrip(" :-\"'")
    t = _CLOSERS.sub("", t)
    return normalise_ws(t.strip().strip("\"'“”"))


def common_prompt_prefix(texts: list[str], min_share: float = 0.5, min_words: int = 4) -> str:
    """The longest run of leading sentences that at least ``min_share`` of ``texts`` start with.

    For imported captions whose prompt is unknown: a prompt echoed into every caption is the same opening
    sentence(s) across the set, which an answer written at temperature > 0 almost never is."""
    if len(texts) < 10:
        return ""
    best = ""
    for k in range(1, 8):
        heads = Counter()
        for t in texts:
            sents = _SENTENCE_END.split(normalise_ws(t))
            if len(sents) > k:
                heads[" ".join(sents[:k])] += 1
        if not heads:
            break
        head, n = heads.most_common(1)[0]
        if n < min_share * len(texts):
            break
        best = head
    return best if word_count(best) >= min_words else ""


# ---- near duplicates: MinHash over word 3-shingles with LSH banding ----

_P = (1 << 61) - 1


class NearDuplicateIndex:
    """Answers "is this text an exact or near duplicate (shingle Jaccard ≥ threshold) of one already added?"

    MinHash + LSH (16 bands × 4 rows) finds candidates in O(1) per text; candidates are confirmed with the
    exact Jaccard, so the answer is exact for every candidate pair and misses true pairs only with tiny
    probability (1 - (1 - J^4)^16 < 0.01% at J = 0.8)."""

    def __init__(self, threshold: float = 0.8, shingle: int = 3, bands: int = 16, rows: int = 4) -> None:
        self.threshold, self.k, self.bands, self.rows = threshold, shingle, bands, rows
        rng = np.random.default_rng(1234)  # fixed: signatures must agree between runs
        n = bands * rows
        self._a = rng.integers(1, _P, n, dtype=np.uint64)
        self._b = rng.integers(0, _P, n, dtype=np.uint64)
        self._exact: set[str] = set()
        self._shingles: list[frozenset[int]] = []
        self._buckets: dict[tuple[int, bytes], list[int]] = {}

    def _shingle_set(self, text: str) -> frozenset[int]:
        w = [x.lower() for x in words(text)]
        grams = [" ".join(w[i : i + self.k]) for i in range(max(1, len(w) - self.k + 1))]
        return frozenset(zlib.crc32(g.encode()) for g in grams)

    def _signature(self, sh: frozenset[int]) -> np.ndarray:
        x = np.fromiter(sh, dtype=np.uint64)[:, None]
        # (a*x + b) mod 2^64 is a fine universal-ish hash for MinHash on 32-bit shingle ids.
        return (x * self._a[None, :] + self._b[None, :]).min(axis=0)

    def check(self, text: str) -> str | None:
        """'exact', 'near' or None (new), without adding."""
        key = normalise_ws(text).lower()
        if key in self._exact:
            return "exact"
        if self.threshold >= 1.0:
            return None
        sh = self._shingle_set(text)
        sig = self._signature(sh)
        seen: set[int] = set()
        for b in range(self.bands):
            for j in self._buckets.get((b, sig[b * self.rows : (b + 1) * self.rows].tobytes()), []):
                if j in seen:
                    continue
                seen.add(j)
                other = self._shingles[j]
                if len(sh & other) / max(1, len(sh | other)) >= self.threshold:
                    return "near"
        return None

    def add(self, text: str) -> None:
        self._exact.add(normalise_ws(text).lower())
        if self.threshold >= 1.0:
            return
        sh = self._shingle_set(text)
        sig = self._signature(sh)
        j = len(self._shingles)
        self._shingles.append(sh)
        for b in range(self.bands):
            self._buckets.setdefault((b, sig[b * self.rows : (b + 1) * self.rows].tobytes()), []).append(j)

    def add_if_new(self, text: str) -> str | None:
        """Add ``text`` unless it duplicates; return None when added, else 'exact' or 'near'."""
        dup = self.check(text)
        if dup is None:
            self.add(text)
        return dup


# ---- class names: inflections, leak detection and masking ----


def name_forms(cls: str, extra: Iterable[str] = ()) -> list[str]:
    """The class name with common English/Latin inflections (spore/spores, hypha/hyphae/hyphal,
    mycelium/mycelia/mycelial), longest first so masking replaces whole words."""
    base = cls.strip().lower()
    forms = {base, base + "s"}
    if base.endswith("um"):
        forms |= {base[:-2] + "a", base[:-2] + "al"}
    if base.endswith("ae"):
        forms |= {base[:-1], base[:-1] + "s", base[:-2] + "al"}
    if base.endswith("a"):
        forms |= {base + "e", base[:-1] + "al"}
    if base.endswith("e"):
        forms |= {base[:-1] + "al"}
    forms |= {e.lower() for e in extra}
    return sorted(forms, key=len, reverse=True)


def _names_regex(forms: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(f) for f in forms) + r")\b", re.IGNORECASE)


def contains_name(text: str, forms: Iterable[str]) -> bool:
    return bool(_names_regex(forms).search(text))


def mask_names(text: str, forms: Iterable[str], token: str = "this stage") -> str:
    """Replace the class name (any inflection, with a leading article) by ``token`` for leak-free sets."""
    forms = list(forms)
    pat = re.compile(
        r"\b(?:(?:the|a|an|this|each|every)\s+)?(?:fungal\s+)?(?:"
        + "|".join(re.escape(f) for f in forms)
        + r")\b"
        r"(?:\s+stage)?",
        re.IGNORECASE,
    )

    def repl(m: re.Match[str]) -> str:
        start = m.start() == 0 or m.string[: m.start()].rstrip().endswith((".", "!", "?", ":"))
        return token[:1].upper() + token[1:] if start else token

    return normalise_ws(pat.sub(repl, text))
