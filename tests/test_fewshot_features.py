"""Few-shot adapters on backbone features and 8 views (:mod:`fungalzsl.fewshot.features`): the model API
on the tiny open_clip / transformers models and a tiny lite run, exact values of the adapter inputs, the
adapter round trip through ``Classifier.load``, evaluate and export, old adapter.json files, refusals."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fungalzsl import Classifier
from fungalzsl.fewshot.features import adapter_inputs, d4_views, view_features
from fungalzsl.models import build_model
from test_fewshot_cli import _ok, _one_line_error, make_shots
from test_models_backends import tiny_hf_clip_dir, tiny_openclip_dir

pytestmark = pytest.mark.slow


def _orbit(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips / rotations of a (B, C, H, W) batch, written out independently of d4_views."""
    mirrored = torch.flip(x, dims=[3])
    return [torch.rot90(x, k, dims=[2, 3]) for k in range(4)] + [
        torch.rot90(mirrored, k, dims=[2, 3]) for k in range(4)
    ]


def test_d4_views_are_the_eight_symmetries_view_major() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    got = d4_views(x)
    assert got.shape == (16, 3, 4, 4) and torch.equal(got[:2], x)
    assert torch.equal(got, torch.cat(_orbit(x)))
    assert len({tuple(v.flatten().tolist()) for v in got[::2]}) == 8  # an asymmetric image: 8 distinct views


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_backbone_features_of_tiny_models_are_the_pre_projection_outputs(tmp_path, backend) -> None:
    spec = (
        f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}"
        if backend == "openclip"
        else f"hf:{tiny_hf_clip_dir(tmp_path)}"
    )
    model = build_model(spec).eval()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        emb, backbone = model.encode_image_with_backbone(x)
        assert torch.allclose(emb, model.encode_image(x), atol=1e-6)
        if backend == "hf":  # the CLIP pooler output, before visual_projection (32-d, not the 16-d embedding)
            expect = model.model.vision_model(pixel_values=x).pooler_output
            assert backbone.shape == (3, 32)
        else:  # the pooled class token before proj (32-d), as tests/test_openclip_backbone.py checks
            expect = model.model.visual._pool(model.model.visual.transformer(model.model.visual._embeds(x)))[
                0
            ]
            assert backbone.shape == (3, 32)
            assert torch.allclose(emb, F.normalize(backbone @ model.model.visual.proj, dim=-1), atol=1e-6)
        assert torch.allclose(backbone, expect, atol=1e-6)
        assert torch.allclose(model.backbone_features(x), expect, atol=1e-6)
        # 8 views: per image the normalised features of each symmetry, view 0 the image itself
        e8, b8 = view_features(model, x, 8)
        for v, xv in enumerate(_orbit(x)):
            ev, bv = model.encode_image_with_backbone(xv)
            assert torch.allclose(e8[:, v], F.normalize(ev, dim=-1), atol=1e-5)
            assert torch.allclose(b8[:, v], F.normalize(bv, dim=-1), atol=1e-5)
        # the 8-view mean does not change when the image is rotated (the orbit is the same set)
        _, a = adapter_inputs(model, x, "backbone", 8)
        _, r = adapter_inputs(model, torch.rot90(x, 1, dims=[2, 3]), "backbone", 8)
        assert torch.allclose(a, r, atol=1e-5)


def test_lite_backbone_is_the_pooled_trunk(tiny_pipeline) -> None:
    clf = Classifier.load(tiny_pipeline / "run")
    model = clf.model
    n = len(model.layer_groups()["image"])
    x = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        emb, backbone = model.encode_image_with_backbone(x)
        assert torch.allclose(backbone, model.image_trunk(x, n).flatten(1), atol=1e-6)
        assert backbone.shape == (2, 1280) and torch.allclose(emb, model.encode_image(x), atol=1e-5)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return make_shots(tmp_path_factory.mktemp("shots8") / "shots")


@pytest.mark.parametrize(("method", "features", "views"), [("prototype", "backbone", 8), ("tip", "backbone", 1),
                                                           ("anchored", "embedding", 8),
                                                           ("anchored", "both", 8), ("tip", "both", 1)])  # fmt: skip
def test_adapter_on_backbone_or_views_round_trips(
    tiny_pipeline, shots, tmp_path, method, features, views
) -> None:
    run_dir, out = tiny_pipeline / "run", tmp_path / "adapted"
    _ok(["adapt", run_dir, "--shots", shots, "--out", out, "--method", method, "--features", features,
         "--views", views])  # fmt: skip
    spec = json.loads((out / "adapter.json").read_text())
    assert (spec["features"], spec["views"]) == (features, views)
    assert json.loads((out / "config.json").read_text())["adapter"]["features"] == features
    base, clf = Classifier.load(run_dir), Classifier.load(out)
    assert (clf.adapter.features, clf.adapter.views) == (features, views) and clf.adapter.needs_own_inputs
    images = sorted(shots.rglob("*.png"))
    got = clf.predict(images)
    x = torch.stack([clf.model.preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():  # computed here without fewshot.features: the orbit written out
        outs = [clf.model.encode_image_with_backbone(xv) for xv in (_orbit(x)[:views])]

        def mean_of(i: int) -> torch.Tensor:
            return F.normalize(torch.stack([F.normalize(o[i].float(), dim=-1) for o in outs]).mean(0), dim=-1)

        kind = {"embedding": [0], "backbone": [1], "both": [0, 1]}[features]
        inputs = torch.cat([mean_of(i) for i in kind], 1) / len(kind) ** 0.5
        expect = clf.adapter.logits(inputs, base.scores(clf.model.encode_image(x).float())).softmax(-1)
    probs = torch.tensor([[g.probabilities[c] for c in clf.classes] for g in got])
    assert torch.allclose(probs, expect, atol=1e-5)
    with pytest.raises(ValueError, match="its own features"):
        clf.scores(clf.model.encode_image(x).float())
    _ok(["evaluate", out, "--data", shots, "--split", "none", "--out", tmp_path / "eval", "--no-baseline"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["classifier"] == f"mean+{method}" and metrics["n"] == 12
    labels = [clf.classes.index(p.parent.name) for p in images]
    assert metrics["recall@1"] == pytest.approx(
        float((probs.argmax(-1) == torch.tensor(labels)).float().mean())
    )
    _one_line_error(["export", out, "--out", tmp_path / "onnx"], "does not hold")


def test_old_adapter_files_mean_embedding_one_view(tiny_pipeline, shots, tmp_path) -> None:
    out = tmp_path / "old"
    _ok(["adapt", tiny_pipeline / "run", "--shots", shots, "--out", out, "--method", "prototype"])
    spec = json.loads((out / "adapter.json").read_text())
    assert (spec.pop("features"), spec.pop("views")) == ("embedding", 1)
    (out / "adapter.json").write_text(json.dumps(spec))  # as written before features/views existed
    clf = Classifier.load(out)
    assert (clf.adapter.features, clf.adapter.views) == ("embedding", 1) and not clf.adapter.needs_own_inputs
    spec["views"] = 3
    (out / "adapter.json").write_text(json.dumps(spec))
    with pytest.raises(Exception, match="rerun 'fungalzsl adapt'"):
        Classifier.load(out)


@pytest.mark.parametrize(("args", "match"), [(["--method", "anchored", "--features", "backbone"], "needs --features embedding or both"),
                                             (["--features", "pixels"], "unknown --features"),
                                             (["--views", "4"], "--views 4 is not supported")])  # fmt: skip
def test_adapt_refusals_are_one_line(tiny_pipeline, shots, tmp_path, args, match) -> None:
    _one_line_error(["adapt", tiny_pipeline / "run", "--shots", shots, "--out", tmp_path / "o", *args], match)
    assert not (tmp_path / "o").exists()


def test_fewshot_protocol_compares_features_and_views(tiny_pipeline, tmp_path) -> None:
    data = make_shots(tmp_path / "data", 4, seed=1)
    out = tmp_path / "fs"
    _ok(["fewshot", tiny_pipeline / "run", "--data", data, "--k", "1,2", "--repeats", "2", "--out", out,
         "--features", "embedding,backbone,both", "--views", "1,8"])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    arms = [(r["k"], r["features"], r["views"], r["method"]) for r in results["results"]]
    full = ("tip", "probe", "prototype", "anchored")
    expect = []
    for k in (1, 2):
        expect += [(k, "embedding", 1, m) for m in ("zeroshot", *full)]
        expect += [(k, "embedding", 8, m) for m in full]
        expect += [(k, "backbone", v, m) for v in (1, 8) for m in ("tip", "probe", "prototype")]
        expect += [(k, "both", v, m) for v in (1, 8) for m in full]  # anchored: text on the embedding half
    assert arms == expect and results["features"] == ["embedding", "backbone", "both"]
    assert results["views"] == [1, 8]
    assert "| backbone | 8 | prototype |" in (out / "results.md").read_text()
    # the embedding/1 arm is the protocol without the new options, on the same draws
    _ok(
        [
            "fewshot",
            tiny_pipeline / "run",
            "--data",
            data,
            "--k",
            "1,2",
            "--repeats",
            "2",
            "--out",
            tmp_path / "plain",
        ]
    )
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())["results"]
    same = [r for r in results["results"] if (r["features"], r["views"]) == ("embedding", 1)]
    assert [r["balanced_accuracy"]["values"] for r in plain] == [
        r["balanced_accuracy"]["values"] for r in same
    ]
    _one_line_error(["fewshot", tiny_pipeline / "run", "--data", data, "--out", tmp_path / "bad", "--views", "1,x"],
                    "not a list of integers")  # fmt: skip


def test_a_model_with_only_encode_image_gives_its_embedding_as_backbone_features() -> None:
    from fungalzsl.fewshot.features import view_features
    from keyword_model import KeywordModel

    m = KeywordModel()
    x = torch.rand(2, 3, 8, 8)
    emb, backbone = view_features(m, x, 1)
    want = torch.nn.functional.normalize(m.encode_image(x).float(), dim=-1)
    assert torch.equal(emb[:, 0], want) and torch.equal(backbone[:, 0], want)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 8]))
def test_both_features_are_the_two_kinds_concatenated_with_equal_weight(seed, views) -> None:
    from fungalzsl.fewshot.features import pick

    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(4, 8, 6, generator=g), dim=-1)
    back = F.normalize(torch.randn(4, 8, 10, generator=g), dim=-1)
    both = pick(emb, back, "both", views)
    e, b = pick(emb, back, "embedding", views), pick(emb, back, "backbone", views)
    assert torch.allclose(both, torch.cat([e, b], 1) / 2**0.5)
    assert torch.allclose(both.norm(dim=-1), torch.ones(4), atol=1e-5)
    # the cosine of two images on both features is the mean of their cosines on each kind
    assert torch.allclose(both @ both.T, (e @ e.T + b @ b.T) / 2, atol=1e-5)
