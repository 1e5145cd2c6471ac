"""The generator's output, byte for byte, against digests recorded with the code before the synth
restructuring (issue 11: writer.py split, plan/sequence cycle broken), for every output option and for
one and two worker processes.

A deliberate change of the pixels bumps ``plan.IMAGE_ALGORITHM`` and records new digests here. A
failure after upgrading skia-python, Pillow or zlib (not after a change of ours) means the library
draws or compresses differently: check the images, then record new digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

# The manifest records the package version; it is pinned so that a release does not count as a change.
GOLDEN_GENERATOR = "fungalzsl 0.1.0"


def dataset_digests(root: Path, manifest_ignores: tuple[str, ...] = ()) -> dict[str, str]:
    """One sha256 per kind of file, over 'relative path, sha256 of the bytes' of every file of that kind.

    ``metadata.parquet`` counts by its schema and rows: its bytes also name the pyarrow version.
    ``manifest_ignores``: manifest keys left out (for manifests whose version is not pinned)."""
    import pyarrow.parquet as pq

    listing: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        data = p.read_bytes()
        if rel.endswith(".parquet"):
            table = pq.read_table(p)
            schema = [(f.name, str(f.type)) for f in table.schema]
            data = json.dumps({"schema": schema, "rows": table.to_pylist()}, sort_keys=True).encode()
        if rel == "dataset.json" and manifest_ignores:
            manifest = {k: v for k, v in json.loads(data).items() if k not in manifest_ignores}
            data = json.dumps(manifest, sort_keys=True).encode()
        if rel.startswith("masks/"):
            kind = "masks"
        elif rel.startswith("shards/"):
            kind = "shards"
        elif rel == "dataset.json":
            kind = "manifest"
        elif rel.endswith((".parquet", ".jsonl", ".csv")):
            kind = "metadata"
        elif rel.endswith(".png") and rel.count("/") == 2:
            kind = "images"
        else:
            kind = "other"  # never in a finished dataset (the progress folder is removed)
        listing.setdefault(kind, []).append(f"{rel} {hashlib.sha256(data).hexdigest()}")
    return {k: hashlib.sha256("\n".join(v).encode()).hexdigest() for k, v in listing.items()}


VARIANTS = {
    "folder": {},
    "masks": {"masks": True},
    "webdataset": {"fmt": "webdataset"},
    "sequence": {"mode": "sequence"},
    "webdataset-masks": {"fmt": "webdataset", "masks": True},
    "sequence-masks": {"mode": "sequence", "masks": True},
}

# fungalzsl generate --out D --num-images 90 --size 64 --seed 3 [variant], made with commit 23d505b.
GOLDEN: dict[str, dict[str, str]] = {
    "folder": {
        "images": "f375de588a0883895d3c4333ffa20d3ce0c1459b59be00f6bc6b60df6de7d599",
        "manifest": "d08f4a16dc56aca97fd9d81b32a03fca00713ba1cfcf398a2badcb7089684459",
        "metadata": "f1bfb101bbfc33e7902859f42e5e28ba77bd4831b991d60deecc797e167024dc",
    },
    "masks": {
        "images": "f375de588a0883895d3c4333ffa20d3ce0c1459b59be00f6bc6b60df6de7d599",
        "manifest": "1ddf08a6e1171afa74501e9c7773f59223a6dc531d82dc83e86d2848b9b2a2bf",
        "masks": "ea0515a71b3bc892fdbdc02a70176175892ffbd4e8f6b19d8ee1b8724cab802e",
        "metadata": "a01f861ff53752c7cff9b43a3ac92cb3da51517091204fc278c717ed76713558",
    },
    "webdataset": {
        "manifest": "336279ef59818536ced4a56cf843b72345269606cb4f68adf5503bd197322724",
        "metadata": "6be130b422bcdcef00bc4e709a4cfd7f959b8d9b332dafbd2cf2fa0a2c72c3e9",
        "shards": "c3a15406b3ee3dd86bfde1cf28335e8edfe1bc2c534aa5b6f4279423d646d37c",
    },
    "sequence": {
        "images": "0e3696aaa611a4a4f6103599edc5282cc6a3b19a45780a48b0773f9a8eee87ef",
        "manifest": "f6c0a03033e410d3dcc313b542ee21dd1bf233ccd1f9036608c3ae381e2b6ea4",
        "metadata": "e9240e1266c67d575143a800f00966ee9c7044df3ea411956175d8ea0fb6059b",
    },
    "webdataset-masks": {
        "manifest": "30ddf40821dfc82581864c28215bcd9dc255f4d20f04b3970f660d17e0a0232f",
        "metadata": "dce008ec7b6a457a4f2162a8a273df65464b405555774e756ec6639f427b2a4b",
        "shards": "a011941859dd333e4095070a616675d607ace1e5017f122230aa5e1c541992f7",
    },
    "sequence-masks": {
        "images": "0e3696aaa611a4a4f6103599edc5282cc6a3b19a45780a48b0773f9a8eee87ef",
        "manifest": "aa345cde9a32fea5a848102f4ef3468304f7480fc7c8150c36b489e4aa5b6ab9",
        "masks": "00b969600de2e00f49e4af8d5d91f3f38d876305c5744b22272df39bed41889d",
        "metadata": "9baf84685af4ceac0a204c4adec10aa825e9947366c6c4391dc506a70598e4a8",
    },
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generated_bytes_match_the_recorded_ones(variant, workers, tmp_path, monkeypatch):
    import fungalzsl.synth.generate as generate

    monkeypatch.setattr(generate, "GENERATOR", GOLDEN_GENERATOR)
    out = tmp_path / variant
    generate.generate_dataset(
        out, "paper", num_images=90, size=64, seed=3, workers=workers, progress=False, **VARIANTS[variant]
    )
    assert dataset_digests(out) == GOLDEN[variant]
