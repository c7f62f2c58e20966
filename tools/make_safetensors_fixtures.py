#!/usr/bin/env python3
"""make_safetensors_fixtures.py - writes tests/fixtures/safetensors/ with the
reference `safetensors` package (never with g4 itself).

Outputs (all tiny, < 50 KB total):
  small.safetensors            one file, every dtype g4 reads, a scalar, an empty tensor,
                               __metadata__ {"format": "pt", "note": "g4 fixture"}
  sharded/model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  expected.json                {"small": [...], "sharded": [...]} one entry per tensor:
                               name, dtype, shape, shard (file name), nbytes,
                               head_hex (first <= 16 raw bytes, little-endian as stored),
                               values (first <= 8 elements as JSON numbers; floats are
                               the exact values of the stored codes, bools as 0/1)

Usage: python3 tools/make_safetensors_fixtures.py [outdir]
Needs: numpy, safetensors, ml_dtypes (pip install ml_dtypes).
"""
import json
import os
import sys

import ml_dtypes
import numpy as np
from safetensors import deserialize
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_tensors():
    rng = np.random.default_rng(1234)
    t = {}
    t["model.embed.weight"] = (rng.standard_normal((4, 8)) * 0.5).astype(ml_dtypes.bfloat16)
    t["model.norm.weight"] = np.array([1.0, -2.5, 0.0009765625, 65504.0, -0.0, 3.140625],
                                      dtype=np.float16)
    t["model.layers.0.scale"] = np.array([[0.1, -1e-8], [3.0e38, 42.0]], dtype=np.float32)
    # E4M3FN: exact codes, includes 448 (0x7E), 2^-9 (0x01), 0.125 (0x20), 88 (0x6B), -0.0 (0x80)
    t["model.layers.0.mlp.weight_scale"] = np.array(
        [[0.125, 1.0, 88.0, 448.0], [2.0**-9, -0.0, -3.5, 0.01953125]], dtype=ml_dtypes.float8_e4m3fn)
    t["model.layers.0.mlp.weight_packed"] = np.arange(0, 256, 37, dtype=np.uint8).reshape(1, 7)
    t["i8"] = np.array([-128, -1, 0, 1, 127], dtype=np.int8)
    t["i16"] = np.array([-32768, 12345, 32767], dtype=np.int16)
    t["u16"] = np.array([0, 1, 65535], dtype=np.uint16)
    t["i32"] = np.array([[-2147483648, 7], [2147483647, -7]], dtype=np.int32)
    t["i64"] = np.array([-(2**62), 2**40 + 3], dtype=np.int64)
    t["f64"] = np.array([1.0 / 3.0, -2.0**-1074], dtype=np.float64)
    t["flag"] = np.array([True, False, True], dtype=np.bool_)
    t["scalar"] = np.array(2.5, dtype=np.float32)          # shape []
    t["empty"] = np.zeros((0, 3), dtype=np.float32)         # zero-size, data_offsets [x,x]
    t["wide.3d"] = rng.integers(0, 255, size=(2, 3, 4), dtype=np.uint8)
    return t


SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


def sharded_tensors():
    rng = np.random.default_rng(99)
    s1 = {
        "lm.a.weight": (rng.standard_normal((3, 4))).astype(ml_dtypes.bfloat16),
        "lm.b.weight_scale": np.array([[1.0], [0.5]], dtype=ml_dtypes.float8_e4m3fn),
        "lm.c": np.array([10, 20, 30], dtype=np.int32),
    }
    s2 = {
        "lm.d.weight": np.array([[1.5, -2.0], [0.25, 8.0]], dtype=np.float32),
        "lm.e.weight_packed": np.array([[0xD7, 0x02, 0x68, 0x4F, 0xE2, 0xA7, 0x94, 0xE6]], dtype=np.uint8),
        "lm.e.weight_global_scale": np.array([5376.0], dtype=np.float32),
    }
    return s1, s2


def values_of(arr):
    flat = arr.reshape(-1)[:8]
    if arr.dtype == np.bool_:
        return [int(x) for x in flat]
    if np.issubdtype(arr.dtype, np.integer):
        return [int(x) for x in flat]
    out = []
    for x in flat.astype(np.float64):
        out.append(float(x))
    return out


def describe(tensors, shard, path):
    # dtype names as stored in the header (read back from the file we just wrote)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    res = []
    for name in sorted(tensors):
        arr = tensors[name]
        raw = np.ascontiguousarray(arr).tobytes()
        res.append({
            "name": name,
            "dtype": header[name]["dtype"],
            "shape": list(arr.shape),
            "shard": shard,
            "nbytes": len(raw),
            "head_hex": raw[:16].hex(),
            "values": values_of(arr),
        })
    return res


def check_roundtrip(tensors, path):
    # the reference deserializer validates the file and returns raw bytes per tensor
    with open(path, "rb") as f:
        back = {name: info for name, info in deserialize(f.read())}
    assert sorted(back) == sorted(tensors), path
    for k, v in tensors.items():
        assert list(back[k]["shape"]) == list(v.shape), k
        assert bytes(back[k]["data"]) == np.ascontiguousarray(v).tobytes(), k


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "safetensors")
    os.makedirs(os.path.join(out, "sharded"), exist_ok=True)

    small = small_tensors()
    p = os.path.join(out, "small.safetensors")
    save_file(small, p, metadata={"format": "pt", "note": "g4 fixture"})
    check_roundtrip(small, p)
    expected = {"small": describe(small, "small.safetensors", p)}

    s1, s2 = sharded_tensors()
    p1 = os.path.join(out, "sharded", SHARD1)
    p2 = os.path.join(out, "sharded", SHARD2)
    save_file(s1, p1, metadata={"format": "pt"})
    save_file(s2, p2, metadata={"format": "pt", "shard": "2"})
    check_roundtrip(s1, p1)
    check_roundtrip(s2, p2)
    total = sum(np.ascontiguousarray(v).nbytes for v in list(s1.values()) + list(s2.values()))
    wmap = {k: SHARD1 for k in s1}
    wmap.update({k: SHARD2 for k in s2})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    expected["sharded"] = describe(s1, SHARD1, p1) + describe(s2, SHARD2, p2)
    expected["sharded"].sort(key=lambda e: e["name"])

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    size = 0
    for dp, _, fs in os.walk(out):
        for x in fs:
            os.chmod(os.path.join(dp, x), 0o644)   # save_file creates 0600
            size += os.path.getsize(os.path.join(dp, x))
    print(f"wrote {out} ({size} bytes)")
    assert size < 50_000


if __name__ == "__main__":
    main()
