"""Tests of adapix.weights: export/load round trips and refusal of bad weights files."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load, save as st_save

from adapix.config import FORMAT_VERSION, TINY, ModelConfig
from adapix.errors import WeightsError
from adapix.weights import export_weights, load_weights, load_weights_bytes, weights_bytes


def parse(data: bytes) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file."""
    n = int.from_bytes(data[:8], "little")
    return st_load(data), dict(json.loads(data[8:8 + n]).get("__metadata__") or {})


def rebuild(tensors: dict, meta: dict) -> bytes:
    return st_save(tensors, metadata=meta)


@pytest.fixture(scope="module")
def tiny_bytes() -> bytes:
    """fp32 weights of a perturbed TINY model (built here: module scope, no fixture factory)."""
    from adapix.model import AdapixModel
    from adapix.weights import build_tables

    torch.manual_seed(3)
    model = AdapixModel(TINY).eval()
    with torch.no_grad():
        model.generator.synth.weight.normal_(0.0, 0.05)
    build_tables(model)
    return weights_bytes(model, "tiny-w", fp16=False, steps=12, notes="test")


def test_export_load_round_trip_identical_outputs(make_model, tmp_path):
    model = make_model(seed=1)
    path = tmp_path / "w.safetensors"
    h = export_weights(model, path, "round-trip", fp16=False, steps=7, notes="n")
    data = path.read_bytes()
    loaded = load_weights(path)
    assert h == loaded.weights_hash == hashlib.sha256(data).digest()[:8]
    assert loaded.model_id == "round-trip"
    assert loaded.postfilter_trained is False
    assert loaded.meta["steps"] == "7" and loaded.meta["notes"] == "n"
    m2 = loaded.model
    assert not m2.training
    assert m2.cfg == model.cfg
    sd1, sd2 = model.state_dict(), m2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    for p1, p2 in ((model.z_prior, m2.z_prior), (model.s_prior, m2.s_prior)):
        assert np.array_equal(p1.table.pmf, p2.table.pmf)
        assert np.array_equal(p1.table.offset, p2.table.offset)
    assert np.array_equal(model.snap.stds, m2.snap.stds)

    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    t = torch.tensor([2.2])
    with torch.no_grad():
        o1, o2 = model(x, t, postfilter=True), m2(x, t, postfilter=True)
    assert torch.equal(o1.x_hat, o2.x_hat)
    assert torch.equal(o1.bits, o2.bits)
    r1, r2 = model.compress(x, 2.2), m2.compress(x, 2.2)
    assert r1.streams == r2.streams
    assert torch.equal(r1.x_hat, r2.x_hat)
    assert r1.est_bits == r2.est_bits
    assert torch.equal(m2.decompress(r1.streams, (64, 64), 2.2), r1.x_hat)


def test_fp16_export(make_model, tmp_path):
    model = make_model(seed=2)
    path = tmp_path / "w16.safetensors"
    export_weights(model, path, "half", fp16=True, postfilter_trained=True)
    loaded = load_weights(path)
    assert loaded.postfilter_trained
    sd1, sd2 = model.state_dict(), loaded.model.state_dict()
    for k, v in sd1.items():
        if not v.is_floating_point():
            assert torch.equal(v, sd2[k])
        elif "prior" in k or "gain" in k:  # kept in float32
            assert torch.equal(v, sd2[k]), k
        else:
            assert torch.equal(v.half().float(), sd2[k]), k
    tensors, _ = parse(path.read_bytes())
    assert tensors["model.g_a.net.0.weight"].dtype == torch.float16
    x = torch.rand(1, 3, 64, 64)
    res = loaded.model.compress(x, 1.0)
    assert torch.equal(loaded.model.decompress(res.streams, (64, 64), 1.0), res.x_hat)


def test_weights_bytes_is_deterministic(make_model):
    """Exporting the same model twice must give the same file, hence the same weights hash
    (else .apx files made with one export are refused by the other: ModelMismatchError).

    Fails (src bug): safetensors (0.8) writes the ``__metadata__`` entries in a random order
    (a Rust HashMap), so the header, the file and its hash change from call to call.
    """
    model = make_model(seed=4)
    files = {weights_bytes(model, "det", fp16=False) for _ in range(3)}
    assert len(files) == 1


def test_config_is_rebuilt_from_metadata(make_model, tmp_path):
    cfg = dataclasses.replace(TINY, M=32, ctx_hidden=20, scales=2, analysis_blocks=1,
                              synthesis_blocks=1, synthesis_channels=20)
    model = make_model(seed=5, cfg=cfg)
    path = tmp_path / "m32.safetensors"
    export_weights(model, path, "m32", fp16=False)
    loaded = load_weights(path)
    assert loaded.model.cfg == cfg
    assert loaded.model.cfg.M == 32
    assert loaded.model.g_a.net[-1].out_channels == 32
    assert loaded.model.g_a.blocks[2][0].c1.in_channels == 32  # the blocks at 1/16 have M
    assert torch.equal(loaded.model.g_a.blocks[2][0].c1.weight, model.g_a.blocks[2][0].c1.weight)
    assert len(loaded.model.g_s.blocks) == 3 and loaded.model.g_s.blocks[0][0].c1.in_channels == 20
    assert loaded.model.g_a.net[0].out_channels == 16  # g_s alone has synthesis_channels
    assert loaded.model.decode_steps == 1 + cfg.groups * (1 + 3 * (cfg.scales - 1))
    _, meta = parse(path.read_bytes())
    assert ModelConfig.from_json(meta["config"]) == cfg
    assert meta["format_version"] == str(FORMAT_VERSION)
    x = torch.rand(1, 3, 64, 64)
    res = loaded.model.compress(x, 3.0)
    assert torch.equal(loaded.model.decompress(res.streams, (64, 64), 3.0), res.x_hat)


def test_loads_the_fixture_bytes(tiny_bytes):
    loaded = load_weights_bytes(tiny_bytes)
    assert loaded.model_id == "tiny-w"
    assert loaded.meta["notes"] == "test"


def test_missing_tables_raise_weights_error(tiny_bytes):
    tensors, meta = parse(tiny_bytes)
    table_keys = [k for k in tensors if k.startswith("tables.")]
    assert {"tables.z.pmf", "tables.z.offset", "tables.s.pmf", "tables.s.offset",
            "tables.scale"} <= set(table_keys)
    no_tables = {k: v for k, v in tensors.items() if not k.startswith("tables.")}
    with pytest.raises(WeightsError, match="tables"):
        load_weights_bytes(rebuild(no_tables, meta))
    for key in table_keys:
        partial = {k: v for k, v in tensors.items() if k != key}
        with pytest.raises(WeightsError, match="tables"):
            load_weights_bytes(rebuild(partial, meta))


@pytest.mark.parametrize("version", [str(FORMAT_VERSION + 1), "0", "", "99", None])
def test_wrong_format_version_raises_weights_error(tiny_bytes, version):
    tensors, meta = parse(tiny_bytes)
    if version is None:
        del meta["format_version"]
    else:
        meta["format_version"] = version
    with pytest.raises(WeightsError, match="version"):
        load_weights_bytes(rebuild(tensors, meta))


@pytest.mark.parametrize("version", ["abc", "1.0", "v1"])
def test_non_numeric_format_version_raises_weights_error(tiny_bytes, version):
    """Fails (src bug): ``int(meta.get("format_version"))`` in load_weights_bytes is outside any
    try block, so a non-numeric version escapes as ValueError instead of WeightsError."""
    tensors, meta = parse(tiny_bytes)
    meta["format_version"] = version
    with pytest.raises(WeightsError):
        load_weights_bytes(rebuild(tensors, meta))


def _garbage_cases(valid: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    n = int.from_bytes(valid[:8], "little")
    return {
        "empty": b"",
        "short": b"abc",
        "zero_header": b"\x00" * 16,
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "huge_header_len": (10 ** 9).to_bytes(8, "little") + b"{}",
        "bad_json": (5).to_bytes(8, "little") + b"{nope",
        "truncated": valid[: len(valid) // 2],
        "header_only": valid[: 8 + n],
        "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    }


def test_garbage_bytes_raise_weights_error(tiny_bytes):
    for name, data in _garbage_cases(tiny_bytes).items():
        with pytest.raises(WeightsError):
            load_weights_bytes(data, name)


def test_garbage_file_and_missing_path_raise_weights_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file at all")
    with pytest.raises(WeightsError):
        load_weights(bad)
    with pytest.raises(WeightsError):
        load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError):
        load_weights(tmp_path)  # a directory


def test_invalid_metadata_raises_weights_error(tiny_bytes):
    tensors, meta = parse(tiny_bytes)
    cases = []
    m = dict(meta)
    del m["config"]
    cases.append(m)
    cases.append({**meta, "config": "{not json"})
    cfg = json.loads(meta["config"])
    cases.append({**meta, "config": json.dumps({**cfg, "unknown_key": 1})})
    cases.append({**meta, "config": json.dumps({**cfg, "M": 32})})  # tensors do not match
    cases.append({**meta, "model_id": "Bad ID!"})
    cases.append({**meta, "model_id": ""})
    for m in cases:
        with pytest.raises(WeightsError):
            load_weights_bytes(rebuild(tensors, m))


@pytest.mark.parametrize("change", [
    {"lambdas": [0.1, 0.2]},  # tensors do not match: refused when loading the state dict
    {"M": 25},                # not divisible by groups: MSPModel raises ValueError
    {"M": "24"},              # TypeError while building the model
    {"M": -1},                # RuntimeError (negative dimension)
    {"N": 16.5},
    {"lambdas": "abc"},
    {"scales": 0},            # builds and loads, but cannot code anything
    {"synthesis_channels": -2},
], ids=["tensor-mismatch", "M-not-divisible", "M-str", "M-negative", "N-float", "lambdas-str",
        "scales-0", "synthesis-channels-negative"])
def test_invalid_config_values_raise_weights_error(tiny_bytes, change):
    """Fails (src bug) except for the first case: ``AdapixModel(cfg)`` in load_weights_bytes is
    outside the try block and ModelConfig validates nothing, so a file with bad config values
    raises ValueError/TypeError/RuntimeError (or loads, for scales=0) instead of WeightsError."""
    tensors, meta = parse(tiny_bytes)
    cfg = json.loads(meta["config"])
    meta["config"] = json.dumps({**cfg, **change})
    with pytest.raises(WeightsError):
        load_weights_bytes(rebuild(tensors, meta))


def test_tensors_missing_or_extra_raise_weights_error(tiny_bytes):
    tensors, meta = parse(tiny_bytes)
    missing = {k: v for k, v in tensors.items() if k != "model.g_a.net.0.weight"}
    with pytest.raises(WeightsError):
        load_weights_bytes(rebuild(missing, meta))
    extra = {**tensors, "model.extra.weight": torch.zeros(3)}
    with pytest.raises(WeightsError):
        load_weights_bytes(rebuild(extra, meta))


def test_export_rejects_bad_model_id(make_model, tmp_path):
    with pytest.raises(ValueError):
        export_weights(make_model(), tmp_path / "x.safetensors", "Not Valid")
    assert not (tmp_path / "x.safetensors").exists()
