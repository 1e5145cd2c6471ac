"""`fungalzsl describe` with the bank backend: records, resume, masking, bounds, CLI behaviour."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.io import read_jsonl
from fungalzsl.text.cleanup import contains_name, name_forms
from fungalzsl.text.generate import generate_descriptions
from fungalzsl.text.records import load_description_set, text_hash

RUN = CliRunner()


def test_records_carry_full_provenance(tmp_path):
    rep = generate_descriptions("bank", per_class=12, out=tmp_path / "d.jsonl", seed=3, batch_size=5)
    recs = read_jsonl(rep.out)
    assert len(recs) == 36 and rep.total_added == 36 and rep.shortfall == {}
    for r in recs:
        assert {"class", "text", "set", "backend", "model", "prompt_id", "temperature", "sampling", "seed",
                "created_at", "hash"} <= set(r)  # fmt: skip
        assert r["backend"] == "bank" and r["model"] == "fungi-bank-v1" and r["set"] == "d"
        assert r["temperature"] is None  # a bank does not sample tokens; it says so
        assert r["hash"] == text_hash(r["text"])
    # Prompts are cycled, so every attribute focus of the paper is represented.
    assert {r["prompt_id"] for r in recs} == {"general", "colour", "structure", "development", "function"}


def test_resume_after_a_torn_write_equals_an_uninterrupted_run(tmp_path):
    full = generate_descriptions("bank", per_class=20, out=tmp_path / "full.jsonl", seed=5, batch_size=4)
    part = tmp_path / "part.jsonl"
    generate_descriptions("bank", per_class=20, out=part, seed=5, batch_size=4, set_name="full")
    lines = part.read_text().splitlines(keepends=True)
    # Simulate a kill: 27 whole records, then half a line.
    part.write_text("".join(lines[:27]) + lines[27][: len(lines[27]) // 2])
    rep = generate_descriptions("bank", per_class=20, out=part, seed=5, batch_size=4, set_name="full")
    assert rep.existing == {"spore": 20, "hyphae": 7, "mycelium": 0}
    assert rep.added == {"spore": 0, "hyphae": 13, "mycelium": 20}
    a, b = read_jsonl(full.out), read_jsonl(part)
    assert [(r["class"], r["text"]) for r in a] == [(r["class"], r["text"]) for r in b]
    # A second rerun has nothing to do.
    again = generate_descriptions("bank", per_class=20, out=part, seed=5, batch_size=4, set_name="full")
    assert again.total_added == 0 and len(read_jsonl(part)) == 60


@pytest.mark.parametrize(
    "torn",
    [
        lambda line: line[: len(line) // 2],  # a kill mid-append: no newline
        lambda line: line[: len(line) // 2] + "\n",  # cut short, yet newline-terminated
        lambda line: "\x00" * len(line),  # a power loss: the tail's blocks never written
    ],
    ids=["no-newline", "newline", "nul-bytes"],
)
def test_resume_cuts_a_torn_last_line_and_stats_accepts_the_result(tmp_path, capsys, torn):
    full = generate_descriptions("bank", per_class=6, out=tmp_path / "full.jsonl", seed=5, batch_size=4)
    part = tmp_path / "part.jsonl"
    lines = full.out.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:8]) + torn(lines[8]))
    capsys.readouterr()
    rep = generate_descriptions("bank", per_class=6, out=part, seed=5, batch_size=4, set_name="full")
    assert "cut the torn last line" in capsys.readouterr().err
    assert rep.existing == {"spore": 6, "hyphae": 2, "mycelium": 0}
    assert [(r["class"], r["text"]) for r in read_jsonl(part)] == [
        (r["class"], r["text"]) for r in read_jsonl(full.out)
    ]
    res = RUN.invoke(app, ["describe", "stats", str(part), "--json"])
    assert res.exit_code == 0 and '"n": 6' in res.output, res.output


def test_resume_refuses_a_malformed_line_mid_file_naming_it(tmp_path):
    out = generate_descriptions("bank", per_class=3, out=tmp_path / "d.jsonl", batch_size=4).out
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + '{"class": "hyphae", "te\n' + "".join(lines[4:]))
    before = out.read_bytes()
    res = RUN.invoke(app, ["describe", "--backend", "bank", "--per-class", "5", "--out", str(out)])
    assert res.exit_code == 2 and f"{out}:5 is not valid JSON" in res.output, res.output
    assert "fix or delete that line" in res.output and "Traceback" not in res.output
    assert out.read_bytes() == before  # nothing cut or appended


def test_growing_per_class_tops_up_without_duplicates(tmp_path):
    out = tmp_path / "d.jsonl"
    generate_descriptions("bank", per_class=10, out=out)
    generate_descriptions("bank", per_class=25, out=out)
    ds = load_description_set(out)
    for texts in ds.by_class.values():
        assert len(texts) == 25 and len(set(texts)) == 25


def test_mask_class_name_removes_own_name(tmp_path):
    rep = generate_descriptions("bank", per_class=40, out=tmp_path / "m.jsonl", mask_class_name=True)
    ds = load_description_set(rep.out)
    for cls, texts in ds.by_class.items():
        assert not any(contains_name(t, name_forms(cls)) for t in texts), cls
        assert sum("this stage" in t.lower() for t in texts) > 20


def test_impossible_bounds_report_a_shortfall_and_keep_what_fits(tmp_path):
    rep = generate_descriptions(
        "bank", classes=["spore"], per_class=30, out=tmp_path / "s.jsonl", min_words=3, max_words=5,
        max_resample=1,
    )  # fmt: skip
    assert rep.shortfall.get("spore", 0) > 0
    assert sum(rep.rejected["spore"].values()) > 0
    recs = read_jsonl(rep.out) if rep.out.exists() else []
    assert all(3 <= len(r["text"].split()) <= 5 for r in recs)
    # 30 missing x (1 + 1 resample) attempts in all, each accepted or rejected for a reason.
    assert rep.added["spore"] + rep.rejected["spore"]["too_long"] == 60


def test_a_set_is_not_mixed_with_another_backend_or_name(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text(
        json.dumps({"class": "spore", "text": "x y z", "set": "d", "backend": "openai", "model": "m"}) + "\n"
    )
    with pytest.raises(FungalError, match="from openai:m"):
        generate_descriptions("bank", per_class=2, out=out)
    with pytest.raises(FungalError, match="already holds set 'd'"):
        generate_descriptions("bank", per_class=2, out=out, set_name="other")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backend", "gpt5"], "unknown backend"),
        (["--backend", "ollama:"], "needs a model"),
        (["--per-class", "0"], "per_class"),
        (["--min-words", "50", "--max-words", "10"], "word bounds"),
        (["--prompts", "/nonexistent.yaml"], "prompt file"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path, args, needle):
    res = RUN.invoke(app, ["describe", "--out", str(tmp_path / "d.jsonl"), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_cli_missing_out_is_explained():
    res = RUN.invoke(app, ["describe", "--backend", "bank"])
    assert res.exit_code == 2 and "--out" in res.output


def test_cli_generates_and_reports(tmp_path):
    out = tmp_path / "bank.jsonl"
    res = RUN.invoke(app, ["describe", "--backend", "bank", "--per-class", "15", "--out", str(out), "--seed", "2",
                           "--classes", "spore,mycelium"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "30 new" in res.output
    ds = load_description_set(out)
    assert sorted(ds.classes) == ["mycelium", "spore"] and ds.name == "bank"


def test_custom_prompt_file_is_used(tmp_path):
    pf = tmp_path / "p.yaml"
    pf.write_text("prompts:\n  - {id: only-colour, aspect: colour, text: 'Colour of {class}?'}\n")
    rep = generate_descriptions("bank", per_class=5, out=tmp_path / "d.jsonl", prompts=pf)
    assert {r["prompt_id"] for r in read_jsonl(rep.out)} == {"only-colour"}
    pf.write_text("prompts:\n  - {id: x, text: 'no placeholder'}\n")
    with pytest.raises(FungalError, match="containing"):
        generate_descriptions("bank", per_class=5, out=tmp_path / "e.jsonl", prompts=pf)


def test_config_section_sets_defaults_and_command_line_wins(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("describe:\n  backend: bank\n  per_class: 4\n  classes: [spore]\n  seed: 9\n")
    out = tmp_path / "d.jsonl"
    res = RUN.invoke(app, ["describe", "--config", str(cfg), "--out", str(out), "--per-class", "3"])
    assert res.exit_code == 0, res.output
    recs = read_jsonl(out)
    assert len(recs) == 3 and {r["class"] for r in recs} == {"spore"}
    cfg.write_text("describe:\n  per_clas: 4\n")
    res = RUN.invoke(app, ["describe", "--config", str(cfg), "--out", str(tmp_path / "e.jsonl")])
    assert res.exit_code == 2 and "per_clas" in res.output and "Traceback" not in res.output


def test_settings_api_matches_the_cli(tmp_path):
    from fungalzsl.text.settings import describe_from_settings, load_describe_settings

    s = load_describe_settings("cpu-default", {"per_class": 5, "classes": "hyphae,mycelium"})
    rep = describe_from_settings(s, tmp_path / "s.jsonl")
    assert rep.added == {"hyphae": 5, "mycelium": 5}
    rep2 = describe_from_settings({"per_class": 5, "classes": ["hyphae", "mycelium"]}, tmp_path / "t.jsonl")
    assert read_jsonl(rep.out)[0]["text"] == read_jsonl(rep2.out)[0]["text"]


def test_cli_warns_about_a_shortfall_and_help_shows_examples(tmp_path):
    out = tmp_path / "s.jsonl"
    res = RUN.invoke(app, ["describe", "--per-class", "3", "--classes", "spore", "--min-words", "2",
                           "--max-words", "4", "--max-resample", "0", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0
    assert "warning: still missing spore" in res.output and "rerun to top up" in res.output
    res = RUN.invoke(app, ["describe", "--help"])
    assert res.exit_code == 0 and "ollama:llama3.2" in res.output and "resumes" in res.output
    for sub in ("import", "stats"):
        assert RUN.invoke(app, ["describe", sub, "--help"]).exit_code == 0


def test_resume_false_starts_afresh_but_not_on_bad_settings(tmp_path):
    out = tmp_path / "d.jsonl"
    generate_descriptions("bank", per_class=3, out=out, seed=1)
    with pytest.raises(FungalError):
        generate_descriptions("bank", per_class=0, out=out, resume=False)
    assert len(read_jsonl(out)) == 9  # a bad call did not cost the finished set
    generate_descriptions("bank", classes=["spore"], per_class=2, out=out, seed=2, resume=False)
    assert [r["class"] for r in read_jsonl(out)] == ["spore", "spore"]
    res = RUN.invoke(
        app, ["describe", "--per-class", "1", "--classes", "hyphae", "--out", str(out), "--overwrite"]
    )
    assert res.exit_code == 0 and [r["class"] for r in read_jsonl(out)] == ["hyphae"]
