"""`fungalzsl describe import` and `stats`: the authors' released captions and users' own files."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.io import read_jsonl
from fungalzsl.text.importer import import_descriptions
from fungalzsl.text.records import load_description_set
from fungalzsl.text.stats import describe_stats

RUN = CliRunner()


@pytest.fixture(scope="module")
def release_set(release_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "release.jsonl"
    rep = import_descriptions(release_dir / "generated_captions.json", out, model="Llama-2-13b-chat")
    return rep, out


def test_release_captions_all_read_prompt_stripped_classes_right(release_set, release_dir):
    rep, out = release_set
    source = json.loads((release_dir / "generated_captions.json").read_text())
    recs = read_jsonl(out)
    # Every one of the 6,000 captions is accounted for: kept, or dropped because it was nothing but its prompt.
    assert len(source) == 6000
    assert len(recs) + rep.dropped["empty"] == 6000
    # 47 hyphae captions are the prompt and nothing else; some others are only invented follow-up
    # instructions ("Describe the process of spore germination ... Discuss ..."): neither describes anything.
    pure_echo = sum(
        1
        for s in source
        if s["description"].strip().endswith("Focus on the expansion and structure of hyphae.")
    )
    assert pure_echo == 47 and rep.counts["hyphae"] == 2000 - pure_echo
    assert min(rep.counts.values()) > 1900 and set(rep.counts) == {"spore", "hyphae", "mycelium"}
    assert not any(re.match(r"(describe|explain|discuss)\b", r["text"], re.I) for r in recs)
    assert set(rep.stripped_prefix) == {"spore", "hyphae", "mycelium"}
    # Texts keep their order and their classes: record i is the i-th non-empty caption of its class.
    by_cls = {c: [s["description"] for s in source if s["class_label"] == c] for c in rep.counts}
    spore0 = by_cls["spore"][0]
    first = next(r for r in recs if r["class"] == "spore")
    assert " ".join(spore0.split()).endswith(first["text"]) and len(first["text"]) < len(spore0)
    assert all(r["backend"] == "import" and r["model"] == "Llama-2-13b-chat" for r in recs)
    ds = load_description_set(out)
    assert ds.name == "release" and set(ds.classes) == {"spore", "hyphae", "mycelium"}


def test_release_stats_show_duplicates_and_no_echo(release_set):
    _, out = release_set
    st = describe_stats([out])["sets"][0]
    for cs in st["classes"].values():
        assert cs["prompt_echo_rate"] == 0.0
        assert 0.05 < cs["duplicate_rate"] < 0.5  # the release repeats itself; stats must show it
        assert cs["near_duplicate_rate"] >= cs["duplicate_rate"]


def test_keep_prompts_shows_the_label_leak(release_dir, tmp_path):
    out = tmp_path / "raw.jsonl"
    import_descriptions(release_dir / "generated_captions.json", out, strip_prompts=False)
    st = describe_stats([out])["sets"][0]["classes"]
    assert all(cs["prompt_echo_rate"] > 0.99 and cs["own_name_rate"] > 0.99 for cs in st.values())


def test_csv_tsv_txt_jsonl_and_mapping_formats(tmp_path):
    csv = tmp_path / "gpt.csv"
    csv.write_text(
        'Class,Text\nSpores,"Sure! Here is a description: Tiny round yellow cells."\nhypha,Thin orange threads.\n'
    )
    rep = import_descriptions(csv, tmp_path / "a.jsonl", model="gpt-4o")
    recs = read_jsonl(tmp_path / "a.jsonl")
    assert [(r["class"], r["text"]) for r in recs] == [
        ("spore", "Tiny round yellow cells."),
        ("hyphae", "Thin orange threads."),
    ]
    assert rep.counts == {"spore": 1, "hyphae": 1}

    txt = tmp_path / "claude.txt"
    txt.write_text("A dense red mat.\n\nInterwoven deep red threads.\n")
    with pytest.raises(FungalError, match="--class"):
        import_descriptions(txt, tmp_path / "b.jsonl")
    import_descriptions(txt, tmp_path / "b.jsonl", cls="Mycelia")
    assert [r["class"] for r in read_jsonl(tmp_path / "b.jsonl")] == ["mycelium", "mycelium"]

    js = tmp_path / "gemini.json"
    js.write_text(json.dumps({"early": ["Round cells."], "late": ["Red web."]}))
    import_descriptions(js, tmp_path / "c.jsonl", class_map={"early": "spore", "late": "mycelium"})
    assert [r["class"] for r in read_jsonl(tmp_path / "c.jsonl")] == ["spore", "mycelium"]

    jl = tmp_path / "x.jsonl"
    jl.write_text('{"label": "spore", "caption": "Round."}\n')
    import_descriptions(jl, tmp_path / "d.jsonl")
    assert read_jsonl(tmp_path / "d.jsonl")[0]["text"] == "Round."


def test_import_refuses_to_overwrite_and_reports_bad_files(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("one description\n")
    out = tmp_path / "o.jsonl"
    import_descriptions(src, out, cls="spore")
    with pytest.raises(FungalError, match="--overwrite"):
        import_descriptions(src, out, cls="spore")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    res = RUN.invoke(app, ["describe", "import", str(bad), "--out", str(tmp_path / "z.jsonl")])
    assert res.exit_code == 2 and "not valid JSON" in res.output and "Traceback" not in res.output
    nohead = tmp_path / "n.csv"
    nohead.write_text("a,b\n1,2\n")
    with pytest.raises(FungalError, match="no text column"):
        import_descriptions(nohead, tmp_path / "y.jsonl")


def test_stats_counts_leaks_duplicates_and_overlap(tmp_path):
    a = tmp_path / "a.jsonl"
    rows = [
        ("spore", "A round yellow spore cell with a thick wall."),
        ("spore", "A round yellow spore cell with a thick wall."),
        ("spore", "Tiny dormant cells scattered on the plate, unrelated to mycelium."),
        ("spore", "Small bright dots on a plain background here."),
        ("mycelium", "A dense red network of fused threads everywhere."),
    ]
    a.write_text("".join(json.dumps({"class": c, "text": t, "set": "A"}) + "\n" for c, t in rows))
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"class": "spore", "text": "Completely different words entirely."}) + "\n")
    st = describe_stats([a, b])
    sp = st["sets"][0]["classes"]["spore"]
    assert sp["n"] == 4 and sp["distinct"] == 3 and sp["duplicate_rate"] == 0.25
    assert sp["own_name_rate"] == 0.5 and sp["other_name_rate"] == 0.25
    assert sp["words"] == {"min": 8, "mean": 9.0, "median": 9.0, "max": 10}
    j = st["vocabulary_jaccard"]
    la, lb = (s["label"] for s in st["sets"])
    assert j[la][la] == 1.0 and j[la][lb] == 0.0
    res = RUN.invoke(app, ["describe", "stats", str(a), str(b), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["sets"][0]["set"] == "A"
    res = RUN.invoke(app, ["describe", "stats", str(a)])
    assert res.exit_code == 0 and "spore" in res.output and "mycelium" in res.output


def test_a_whole_json_file_passed_as_descriptions_says_to_import_it(release_dir, tmp_path):
    """--descriptions takes JSON Lines; the authors' generated_captions.json is one JSON array, whose first
    line alone ("[") is not JSON. The error says what the file is and the command that converts it."""
    captions = release_dir / "generated_captions.json"
    with pytest.raises(FungalError) as e:
        load_description_set(captions)
    msg = str(e.value)
    assert "is one JSON array (e.g. the authors' generated_captions.json), not JSON Lines" in msg
    assert f"fungalzsl describe import {captions} --out generated_captions.jsonl" in msg
    assert "not valid JSON" not in msg
    obj = tmp_path / "mine.json"
    obj.write_text(json.dumps({"spore": ["round dots"], "hyphae": ["threads"]}, indent=2))
    with pytest.raises(FungalError, match="is one JSON object"):
        load_description_set(obj)
    res = RUN.invoke(app, ["describe", "stats", str(obj)])  # the CLI: one line, exit 2
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "describe import" in res.output
    # the suggested command works, and its output is accepted
    assert (
        RUN.invoke(app, ["describe", "import", str(obj), "--out", str(tmp_path / "mine.jsonl")]).exit_code
        == 0
    )
    assert set(load_description_set(tmp_path / "mine.jsonl").by_class) == {"spore", "hyphae"}
    # a broken JSONL file keeps its line-numbered error
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"class": "spore", "text": "a"}\n{oops\n{"class": "spore", "text": "b"}\n')
    with pytest.raises(FungalError, match=r"bad.jsonl:2 is not valid JSON"):
        load_description_set(bad)
