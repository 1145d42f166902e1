"""Engine cache: keys, sidecars, refusal of mismatched engines with a clear message, and rebuild.

The engine bytes are fake (no TensorRT here): what is tested is the cache's logic, which never looks
inside an engine.
"""

from __future__ import annotations

import json

import pytest

from edge_ls.engines.cache import (
    EngineCache,
    EngineKey,
    EngineMismatchError,
    Target,
    incompatibility,
    read_sidecar,
)
from edge_ls.engines.plan import make_plan
from edge_ls.profiles import load_profile

ORIN = Target("10.3.0", (8, 7), "Orin")
A10 = Target("10.8.0", (8, 6), "NVIDIA A10")
A10_OLD_TRT = Target("10.3.0", (8, 6), "NVIDIA A10")
H100 = Target("10.8.0", (9, 0), "H100")
T4 = Target("10.8.0", (7, 5), "Tesla T4")
ONNX = "ab" * 32
PLAN = "cd" * 32


class Builder:
    """Counts builds; returns distinct fake engine bytes each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"fake-engine-{self.calls}".encode() * 100


def key(target: Target, **kw) -> EngineKey:
    return EngineKey(ONNX, PLAN, target, **kw)


def test_key_names_every_part():
    k = key(A10)
    assert k.filename == f"{ONNX[:16]}-{PLAN[:12]}-trt10.8.0-sm_86.engine"
    assert k.slot == f"{ONNX[:16]}-{PLAN[:12]}"
    assert key(ORIN).filename != k.filename and key(A10_OLD_TRT).filename != k.filename


def test_build_once_then_hit(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    first = cache.get_or_build(key(A10), build, {"profile": "fusion"})
    assert first.status == "built" and build.calls == 1 and first.path.is_file()
    again = cache.get_or_build(key(A10), build)
    assert again.status == "hit" and again.engine == first.engine and build.calls == 1
    meta = read_sidecar(first.path)
    assert meta["target"] == {"trt_version": "10.8.0", "compute_capability": [8, 6], "gpu_name": "NVIDIA A10"}
    assert meta["onnx_sha256"] == ONNX and meta["plan_hash"] == PLAN and meta["plan"] == {"profile": "fusion"}
    assert meta["engine_bytes"] == len(first.engine)


def test_engine_from_another_gpu_is_refused_with_both_sides_named_and_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    cache.get_or_build(key(ORIN), build)  # e.g. a cache folder copied from a Jetson Orin
    result = cache.get_or_build(key(A10), build)
    assert result.status == "rebuilt" and build.calls == 2
    (message,) = result.messages
    assert "built for TensorRT 10.3.0 / sm_87, this machine has TensorRT 10.8.0 / sm_86" in message
    assert message.startswith(f"refusing engine {key(ORIN).filename}")
    assert len(list(tmp_path.glob("*.engine"))) == 2  # both targets kept side by side
    assert cache.get_or_build(key(ORIN), build).status == "hit"  # the Orin still finds its own


def test_other_tensorrt_version_is_refused(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    cache.get_or_build(key(A10_OLD_TRT), build)
    result = cache.get_or_build(key(A10), build)
    assert result.status == "rebuilt"
    assert "tied to the TensorRT version that built them" in result.messages[0]


def test_version_compatible_engine_is_reused_by_a_later_tensorrt_only(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    built = cache.get_or_build(key(A10_OLD_TRT, version_compatible=True), build)
    later = cache.get_or_build(key(A10, version_compatible=True), build)
    assert later.status == "hit" and later.path == built.path and build.calls == 1
    earlier = cache.get_or_build(key(Target("10.1.0", (8, 6)), version_compatible=True), build)
    assert earlier.status == "rebuilt" and "same or a later TensorRT" in earlier.messages[0]


def test_ampere_plus_engine_runs_on_newer_gpus_not_on_turing(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    cache.get_or_build(key(A10, hardware_compatibility="ampere+"), build)
    assert cache.get_or_build(key(H100, hardware_compatibility="ampere+"), build).status == "hit"
    turing = cache.get_or_build(key(T4, hardware_compatibility="ampere+"), build)
    assert turing.status == "rebuilt" and "compute capability 8.0 or newer" in turing.messages[0]


def test_incompatibility_rules():
    assert incompatibility(A10, A10) is None
    assert incompatibility(A10, H100) is not None
    assert incompatibility(A10, H100, hardware_compatibility="ampere+") is None
    assert incompatibility(A10_OLD_TRT, A10, version_compatible=True) is None
    assert incompatibility(A10, A10_OLD_TRT, version_compatible=True) is not None
    assert incompatibility(A10, Target("10.10.0", (8, 6)), version_compatible=True) is None  # 10.10 > 10.8


def test_truncated_engine_is_refused_and_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    path = cache.get_or_build(key(A10), build).path
    path.write_bytes(path.read_bytes()[:-10])
    result = cache.get_or_build(key(A10), build)
    assert result.status == "rebuilt" and "do not match its sidecar" in result.messages[0]
    assert cache.verify(result.path, key(A10)) == result.engine


def test_engine_without_sidecar_is_refused(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    path = cache.get_or_build(key(A10), build).path
    cache.sidecar(path).unlink()
    with pytest.raises(EngineMismatchError, match=r"no sidecar .*\.json says what it was built from"):
        cache.verify(path, key(A10))
    assert cache.get_or_build(key(A10), build).status == "rebuilt"


def test_renamed_engine_of_another_onnx_or_plan_is_refused(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    path = cache.get_or_build(key(A10), build).path
    with pytest.raises(EngineMismatchError, match="built from another ONNX"):
        cache.verify(path, EngineKey("ef" * 32, PLAN, A10))
    with pytest.raises(EngineMismatchError, match="built with other shapes or options"):
        cache.verify(path, EngineKey(ONNX, "00" * 32, A10))


def test_garbled_sidecar_is_refused(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    path = cache.get_or_build(key(A10), build).path
    cache.sidecar(path).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="unreadable sidecar"):
        cache.verify(path, key(A10))
    cache.sidecar(path).write_text(json.dumps({"schema": 99}))
    with pytest.raises(EngineMismatchError, match="unknown layout"):
        cache.verify(path, key(A10))


def test_failed_build_leaves_no_entry(tmp_path):
    cache = EngineCache(tmp_path)

    def broken() -> bytes:
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build(key(A10), broken)
    assert list(tmp_path.iterdir()) == []


def test_plan_keys_separate_profiles_and_onnx(nano_onnx, tmp_path):
    """Real plans from real profiles: same ONNX, other shapes -> other engine; entries list them."""
    nano = make_plan(load_profile("edge-nano"), nano_onnx)
    cache, build = EngineCache(tmp_path), Builder()
    cache.get_or_build(nano.cache_key(A10), build, nano.to_dict())
    assert cache.get_or_build(nano.cache_key(A10), build).status == "hit"
    entries = cache.entries()
    assert len(entries) == 1 and entries[0]["plan"]["profile"] == "edge-nano"
    assert entries[0]["plan"]["plan_hash"] == nano.plan_hash
