"""`fungalzsl evaluate / compare / table` through the CLI, on a toy run directory.

The model registry is replaced by the KeywordModel test double (``build_model('toy')``,
``load_run(dir)``), so these tests exercise the commands, the run-directory contract and the user
errors without model weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import fungalzsl.models
from fungalzsl.cli import app
from keyword_model import COLOURS, GOOD, KeywordModel, make_colour_dataset, write_descriptions


def _fine_tuned() -> KeywordModel:
    # The "fine-tuned" model has learned that reddish-blue is still blue: its blue direction leans red.
    return KeywordModel({**COLOURS, "blue": (0.45, 0.0, 1.0)}, logit_scale=math.log(50.0))


@pytest.fixture
def toy_registry(monkeypatch):
    def build_model(spec, **options):
        if spec != "toy":
            raise fungalzsl.errors.FungalError(f"unknown model spec '{spec}'")
        return KeywordModel()

    def load_run(run_dir):
        return _fine_tuned(), json.loads((run_dir / "config.json").read_text())

    monkeypatch.setattr(fungalzsl.models, "build_model", build_model, raising=False)
    monkeypatch.setattr(fungalzsl.models, "load_run", load_run, raising=False)


@pytest.fixture
def toy_run(tmp_path, toy_registry):
    desc = write_descriptions(tmp_path / "train-set.jsonl", GOOD, "train-set")
    run = tmp_path / "run"
    run.mkdir()
    model = _fine_tuned()
    emb = torch.stack([model.encode_text(GOOD[c]).mean(0) for c in COLOURS])
    save_file(
        {"embeddings": torch.nn.functional.normalize(emb, dim=-1)}, str(run / "class_embeddings.safetensors")
    )
    (run / "config.json").write_text(
        json.dumps(
            {
                "model": "toy",
                "classes": list(COLOURS),
                "train": {"lr": 1e-6},
                "descriptions": {"name": "train-set", "path": str(desc)},
            }
        )
    )
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"epoch": e, "train_loss": 1 / (e + 1), "sec_per_it": 0.5 + 0.1 * e}) + "\n"
            for e in range(3)
        )
    )
    return run


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_evaluate_run_dir_uses_stored_embeddings_and_scores_the_baseline(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    res = _invoke("evaluate", str(toy_run), "--data", str(data), "--out", str(out), "--bootstrap", "50")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["descriptions"] is None  # stored class embeddings, not a description set
    assert m["recall@1"] == pytest.approx(1.0)  # the fine-tuned model fixes the reddish blues
    assert m["baseline"]["model"] == "toy" and m["baseline"]["recall@1"] == pytest.approx(16 / 18)
    assert m["logit_scale"] == pytest.approx(50.0)
    assert m["retrieval"] is not None  # from the training set recorded in config.json
    assert (out / "figures" / "training.png").is_file()
    assert "Recall@1 1.0000" in res.output and "zero-shot start (toy): Recall@1 0.8889" in res.output
    index = [json.loads(x) for x in (toy_run / "evaluations.jsonl").read_text().splitlines()]
    assert index[-1]["out"] == str(out.resolve()) and index[-1]["split"] == "test"


def test_classifier_list_scores_controls_on_the_same_embeddings(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    res = _invoke("evaluate", str(toy_run), "--data", str(data), "--out", str(out), "--classifier",
                  "mean,template,waffle", "--bootstrap", "20")  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["by_classifier"]) == ["mean", "template", "waffle"]
    assert m["by_classifier"]["mean"]["recall@1"] == m["recall@1"] == 1.0
    assert m["by_classifier"]["template"]["classifier"] == "template"
    # the baseline embeds the run's training set with the start model (no stored embeddings for it)
    assert m["baseline"]["descriptions"]["name"] == "train-set"
    assert "## Classifiers" in (out / "report.md").read_text()
    assert "classifier waffle: Recall@1" in res.output


def test_a_training_set_changed_since_training_is_not_used_in_its_name(toy_run, tmp_path):
    from fungalzsl.text.records import load_description_set

    cfg = json.loads((toy_run / "config.json").read_text())
    path = cfg["descriptions"]["path"]
    cfg["descriptions"]["hash"] = load_description_set(path).hash
    (toy_run / "config.json").write_text(json.dumps(cfg))
    with open(path, "a") as f:  # the set grows after training (e.g. 'describe' resumed with a larger N)
        f.write(json.dumps({"class": "red", "text": "another red one"}) + "\n")
    data = make_colour_dataset(tmp_path / "data")
    res = CliRunner().invoke(app, ["evaluate", str(toy_run), "--data", str(data), "--out", str(tmp_path / "e"),
                                   "--bootstrap", "10"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "changed since" in res.output
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["retrieval"] is None and m["baseline"]["classifier"] == "template"


def test_table_reads_run_config_history_and_evaluation(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    _invoke(
        "evaluate",
        str(toy_run),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "e"),
        "--no-baseline",
        "--bootstrap",
        "20",
    )
    out = tmp_path / "table.md"
    res = _invoke("table", str(toy_run), str(tmp_path / "e"), "--out", str(out))
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| CLIP model | Learning rate | Iteration rate | Recall@1")
    assert len(lines) == 4
    assert lines[2].startswith("| toy | 1e-06 | 0.60 s/it | 1.000 [")  # median of 0.5, 0.6, 0.7
    assert out.with_suffix(".csv").read_text().splitlines()[1].split(",")[1:4] == ["toy", "1e-06", "0.6"]


def test_table_prefers_an_evaluation_on_the_runs_own_data(toy_run, tmp_path):
    own = make_colour_dataset(tmp_path / "own")
    other = make_colour_dataset(tmp_path / "other")
    cfg = json.loads((toy_run / "config.json").read_text())
    (toy_run / "config.json").write_text(json.dumps({**cfg, "data": str(own)}))
    swapped = write_descriptions(tmp_path / "swapped.jsonl", {"red": GOOD["green"], "green": GOOD["red"],
                                                              "blue": GOOD["blue"]})  # fmt: skip
    common = ["--no-baseline", "--bootstrap", "10"]
    _invoke("evaluate", str(toy_run), "--data", str(own), "--out", str(tmp_path / "e-own"), *common)
    # a later evaluation on other data (as shift/other users might run) must not replace it in Table 1
    _invoke("evaluate", str(toy_run), "--data", str(other), "--descriptions", str(swapped), "--out",
            str(tmp_path / "e-other"), *common)  # fmt: skip
    from fungalzsl.eval.table import table_row

    row = table_row(toy_run)
    assert row["recall@1"] == 1.0 and row["metrics"] == str((tmp_path / "e-own" / "metrics.json").resolve())


def test_table_data_adds_each_runs_evaluation_on_that_set(toy_run, tmp_path, monkeypatch):
    own = make_colour_dataset(tmp_path / "own")
    make_colour_dataset(tmp_path / "real-dev")
    swapped = write_descriptions(tmp_path / "swapped.jsonl", {"red": GOOD["green"], "green": GOOD["red"],
                                                              "blue": GOOD["blue"]})  # fmt: skip
    cfg = {**json.loads((toy_run / "config.json").read_text()), "data": str(own)}  # as the trainer records
    (toy_run / "config.json").write_text(json.dumps(cfg))
    common = ["--no-baseline", "--bootstrap", "10"]
    _invoke("evaluate", str(toy_run), "--data", str(own), "--out", str(tmp_path / "e-own"), *common)
    monkeypatch.chdir(tmp_path)  # a relative --data is recorded resolved, so table finds it from anywhere
    _invoke("evaluate", str(toy_run), "--data", "real-dev", "--descriptions", str(swapped), "--out", "e-real",
            *common)  # fmt: skip
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(cfg))
    _invoke("evaluate", str(other), "--data", str(own), "--out", str(tmp_path / "e-other"), *common)
    monkeypatch.chdir(own)
    out = tmp_path / "t.md"
    res = _invoke("table", str(toy_run), str(other), "--data", str(tmp_path / "real-dev"), "--out", str(out))
    assert res.exit_code == 0, res.output
    head, _sep, first, second = out.read_text().splitlines()
    assert "| Recall@1 [95% CI] | real-dev Recall@1 (n) | zero-shot start |" in head
    real = json.loads((tmp_path / "e-real" / "metrics.json").read_text())
    assert real["recall@1"] < 1.0  # swapped descriptions: the column must show this evaluation, not own's
    lo, hi = real["ci95"]["recall@1"]
    assert first.split(" | ")[3:5] == [
        "1.000 [1.000, 1.000]",
        f"{real['recall@1']:.3f} [{lo:.3f}, {hi:.3f}] (18)",
    ]
    assert second.split(" | ")[4] == "–"  # never evaluated on real-dev
    csv_head, csv_first, _ = out.with_suffix(".csv").read_text().splitlines()
    assert csv_head.endswith("real-dev recall@1,real-dev ci_low,real-dev ci_high,real-dev n")
    assert csv_first.split(",")[-4:] == [str(real["recall@1"]), str(lo), str(hi), "18"]


def test_table_data_also_finds_a_whole_folder_evaluation(tmp_path):
    # fungalzsl run scores data/real-dev with split None (the whole labelled folder); --data finds it
    from fungalzsl.eval.table import evaluation_on

    run, real = tmp_path / "run", tmp_path / "real-dev"
    run.mkdir()
    real.mkdir()
    recs = []
    for name, split, data in (
        ("z", "none", real),
        ("a", None, real),
        ("b", "val", real),
        ("c", None, tmp_path),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
        recs.append({"out": str(tmp_path / name), "split": split, "data": str(data)})
    (run / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert evaluation_on(run, "test", real) == tmp_path / "a" / "metrics.json"  # not b (val), not c
    assert evaluation_on(run, "val", real) == tmp_path / "b" / "metrics.json"
    assert evaluation_on(run, "test", tmp_path / "other") is None
    recs.append(recs.pop(0))  # the CLI's --split none is the whole folder too
    (run / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert evaluation_on(run, "test", real) == tmp_path / "z" / "metrics.json"


def test_table_without_evaluation_is_a_user_error(toy_run):
    res = _invoke("table", str(toy_run))
    assert res.exit_code == 2 and "has no evaluation" in res.output


def test_evaluate_model_spec_with_template_and_several_sets(toy_registry, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    res = _invoke(
        "evaluate",
        "toy",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "e"),
        "--classifier",
        "template",
        "--bootstrap",
        "20",
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["classifier"] == "template" and m["recall@1"] == pytest.approx(16 / 18) and "baseline" not in m


def test_compare_two_sets(toy_registry, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    good = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    bad = write_descriptions(
        tmp_path / "bad.jsonl", {"red": GOOD["green"], "green": GOOD["red"], "blue": GOOD["blue"]}, "bad"
    )
    out = tmp_path / "cmp"
    res = _invoke(
        "compare",
        "toy",
        "--data",
        str(data),
        "--descriptions",
        str(good),
        str(bad),  # the documented form: several files after one --descriptions
        "--out",
        str(out),
        "--bootstrap",
        "20",
    )
    assert res.exit_code == 0, res.output
    cmp = json.loads((out / "comparison.json").read_text())
    assert [s["name"] for s in cmp["sets"]] == ["good", "bad"]
    assert cmp["sets"][0]["recall@1"] == pytest.approx(16 / 18)
    assert cmp["sets"][1]["per_class_recall"]["red"] == 0.0
    md = (out / "comparison.md").read_text()
    assert f"{cmp['sets'][1]['recall@1']:.3f} [" in md
    assert (out / "figures" / "probabilities.png").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["evaluate", "toy", "--data", "{tmp}/nope", "--out", "{tmp}/o"], "does not exist"),
        (
            ["evaluate", "toy", "--data", "{data}", "--out", "{tmp}/o", "--classifier", "bogus"],
            "unknown classifier",
        ),
        (["evaluate", "toy", "--data", "{data}", "--out", "{tmp}/o"], "no descriptions"),
        (["evaluate", "toy", "--data", "{data}", "--out", "{tmp}/o", "--split", "val"], "no 'val' split"),
        (["evaluate", "nomodel", "--data", "{data}", "--out", "{tmp}/o"], "unknown model spec"),
        (
            ["evaluate", "{data}", "--data", "{data}", "--out", "{tmp}/o"],
            "is a dataset folder (dataset.json): evaluate needs a training run",
        ),
        (
            ["compare", "toy", "--data", "{data}", "--descriptions", "{tmp}/g.jsonl", "--out", "{tmp}/o"],
            "at least two",
        ),
        (["table", "{tmp}/missing"], "missing does not exist: expected a run"),
        (
            [
                "evaluate",
                "toy",
                "--data",
                "{data}",
                "--out",
                "{tmp}/o",
                "--descriptions",
                "{tmp}/captions.json",
            ],
            "captions.json is one JSON array (e.g. the authors' generated_captions.json)",
        ),
        (["evaluate", "toy", "--data", "{tmp}/g.jsonl", "--out", "{tmp}/o"], "is a file, not a dataset"),
        (
            ["evaluate", "toy", "--data", "{data}", "--out", "{tmp}/g.jsonl", "--classifier", "template"],
            "cannot write to",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(toy_registry, tmp_path, args, needle):
    data = make_colour_dataset(tmp_path / "data")
    write_descriptions(tmp_path / "g.jsonl", GOOD)
    (tmp_path / "captions.json").write_text(
        json.dumps([{"class_label": "red", "description": "x"}], indent=1)
    )
    res = CliRunner().invoke(app, [a.format(tmp=tmp_path, data=data) for a in args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and needle in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_evaluate_release_split_file(toy_registry, tmp_path):
    make_colour_dataset(tmp_path / "imgs", n=2, wrong_blue=0)
    # the authors' format: absolute paths from their machine, flat files named <class>_<n>.png
    flat = tmp_path / "release" / "test"
    flat.mkdir(parents=True)
    records = []
    for cls in COLOURS:
        for i in range(2):
            (flat / f"{cls}_{i}.png").write_bytes(
                (tmp_path / "imgs" / "test" / cls / f"{i:06d}.png").read_bytes()
            )
            records.append(
                {
                    "image_path": f"/Dataset/test/{cls}_{i}.png",
                    "class_label": cls,
                    "description": "x",
                    "temperature": 300.0,
                }
            )
    split = tmp_path / "test_data.json"
    split.write_text(json.dumps(records))
    good = write_descriptions(tmp_path / "g.jsonl", GOOD)
    res = _invoke(
        "evaluate",
        "toy",
        "--data",
        str(split),
        "--images",
        str(tmp_path / "release"),
        "--descriptions",
        str(good),
        "--out",
        str(tmp_path / "o"),
        "--bootstrap",
        "20",
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["n"] == 6 and m["recall@1"] == 1.0 and m["classes"] == list(COLOURS)
    res = CliRunner().invoke(app, ["evaluate", "toy", "--data", str(split), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "--images" in res.output


def test_evaluate_takes_several_sets_after_one_option_in_order(toy_registry, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    a = write_descriptions(tmp_path / "a.jsonl", GOOD, "a")
    b = write_descriptions(tmp_path / "b.jsonl", GOOD, "b")
    c = write_descriptions(tmp_path / "c.jsonl", GOOD, "c")
    out = tmp_path / "e"
    res = _invoke("evaluate", "toy", "--data", str(data), "--descriptions", str(a), str(b), str(c), "--out",
                  str(out), "--bootstrap", "10")  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["descriptions"]["name"] == "a" and list(m["by_description_set"]) == ["a", "b", "c"]
    res = CliRunner().invoke(app, ["evaluate", "toy", "stray.jsonl", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "unexpected argument" in res.output


def test_help_documents_the_options():
    for cmd in ("evaluate", "compare", "table"):
        res = CliRunner().invoke(app, [cmd, "--help"])
        assert res.exit_code == 0
    assert "--classifier" in CliRunner().invoke(app, ["evaluate", "--help"]).output


def test_table_markdown_shows_backbone_lr_only_when_it_differs():
    from fungalzsl.eval.table import table_markdown

    row = {"model": "lite", "learning_rate": 1e-3, "backbone_lr": 1e-4, "sec_per_it": 2.5, "recall@1": 0.99,
           "ci95": [0.98, 1.0], "baseline_recall@1": 0.4, "n": 600, "descriptions": "bank"}  # fmt: skip
    line = table_markdown([row]).splitlines()[2]
    assert line.startswith(
        "| lite | 1e-03 (backbone 1e-04) | 2.50 s/it | 0.990 [0.980, 1.000] | 0.400 | 600 |"
    )
    assert "backbone" not in table_markdown([{**row, "backbone_lr": 1e-3}])


def test_evaluate_chils_with_a_hierarchy_file(toy_registry, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    h = tmp_path / "h.yaml"
    h.write_text("red: [crimson red, scarlet red]\nblue: [navy blue]\n")  # green stands for itself
    out = tmp_path / "e"
    res = _invoke("evaluate", "toy", "--data", str(data), "--out", str(out), "--classifier", "chils",
                  "--hierarchy", str(h), "--bootstrap", "10")  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["classifier"] == "chils" and m["recall@1"] == pytest.approx(16 / 18)
    h.write_text("purple: [violet]\n")
    res = CliRunner().invoke(app, ["evaluate", "toy", "--data", str(data), "--out", str(out), "--classifier",
                                   "chils", "--hierarchy", str(h)])  # fmt: skip
    assert res.exit_code == 2 and "not among the classes" in res.output
