"""Clean-up of raw LLM answers: boilerplate, echoes, whitespace, near duplicates, name masking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fungalzsl.text.cleanup import (
    NearDuplicateIndex,
    clean_text,
    common_prompt_prefix,
    mask_names,
    name_forms,
)

PROMPT = "Describe the fungal growth stage spore, focusing on its key biological characteristics."


def test_strips_chat_boilerplate_echo_markdown_and_signoff():
    raw = (
        "Sure! Here is a description of the spore stage:\n\n**" + PROMPT + "**\n\n"
        "  Spores are   small,\nround cells.  I hope this helps! Let me know."
    )
    assert clean_text(raw, [PROMPT]) == "Spores are small, round cells."
    assert clean_text('"' + PROMPT.upper() + ' A spore is tiny."', [PROMPT]) == "A spore is tiny."
    assert clean_text("Certainly. Here's one: - Spores disperse.", []) == "Spores disperse."
    # Text that merely mentions 'here is' mid-sentence is untouched.
    assert (
        clean_text("Spores are round, and here is why: walls.", [])
        == "Spores are round, and here is why: walls."
    )


def test_common_prompt_prefix_needs_a_shared_opening():
    texts = [f"Describe spores. They are round. Answer {i} differs." for i in range(20)]
    assert common_prompt_prefix(texts) == "Describe spores. They are round."
    assert common_prompt_prefix([f"Answer number {i} is different. Yes." for i in range(20)]) == ""
    assert common_prompt_prefix(texts[:5]) == ""  # too few to tell a prompt from chance


def test_near_duplicates_found_exact_and_near_but_not_unrelated():
    idx = NearDuplicateIndex(threshold=0.8)
    base = "the mycelium forms a dense interwoven network of red filaments spreading across the whole field of view"
    assert idx.add_if_new(base) is None
    assert (
        idx.add_if_new(
            "The  mycelium forms a dense interwoven network of red filaments spreading across the whole field of view"
        )
        == "exact"
    )
    assert idx.add_if_new(base + " today") == "near"
    assert idx.add_if_new("a spore is a small round yellow cell with a thick protective wall") is None


@given(st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=60), min_size=1, max_size=25))
def test_near_duplicate_index_never_misses_an_exact_repeat(texts):
    idx = NearDuplicateIndex()
    for t in texts:
        idx.add_if_new(t)
    for t in texts:
        assert idx.check(t) is not None


def test_name_forms_and_masking():
    assert {"hypha", "hyphae", "hyphal"} <= set(name_forms("hyphae"))
    assert {"mycelium", "mycelia", "mycelial"} <= set(name_forms("mycelium"))
    assert {"spore", "spores", "sporal"} <= set(name_forms("spore"))
    t = "The mycelium is a mat. Mycelia grow from a hypha, and this mycelial web spreads."
    assert mask_names(t, name_forms("mycelium")) == (
        "This stage is a mat. This stage grow from a hypha, and this stage web spreads."
    )


_PIECES = [*"abc xyz.,!:*#-\n\"'", "Sure! ", "Here is ", "spore", "Describe ", "I hope this helps"]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


@given(_TEXT)
def test_clean_text_is_idempotent(raw):
    once = clean_text(raw, [PROMPT])
    assert clean_text(once, [PROMPT]) == once
    assert "  " not in once and once == once.strip()


@given(
    st.lists(
        st.sampled_from(["The", "mycelium", "mycelia", "Mycelial", "a", "mat", "grows", ".", "hypha"]),
        max_size=30,
    )
)
def test_masking_leaves_no_own_name(tokens):
    from fungalzsl.text.cleanup import contains_name

    masked = mask_names(" ".join(tokens), name_forms("mycelium"))
    assert not contains_name(masked, name_forms("mycelium"))
