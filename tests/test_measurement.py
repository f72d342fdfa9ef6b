"""Measurements: noise level, determinism, file round trip, and every refusal of read_measurements."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from gs_onnx.errors import GSError
from gs_onnx.io.measurement import read_measurements, write_measurements
from gs_onnx.physics import GaussianOperator, IdentityOperator, measure, noise_sigma, operator_for, paper_sigma

N = 300
M = 120


@pytest.fixture(scope="module")
def op() -> GaussianOperator:
    return GaussianOperator(M, N, seed=4)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((3, N), dtype=np.float32)


def _sidecar(op, **extra):
    d = {"operator": op.describe(), "operator_fingerprint": op.fingerprint(), "seed": 4, "m": op.m, "n": op.n,
         "noise": "paper", "image_shape": [3, 10, 10]}
    d.update(extra)
    return d


# -- noise level ------------------------------------------------------------------------------


def test_paper_sigma_values():
    assert paper_sigma(12288, 2000) == pytest.approx(0.1 / math.sqrt(2000), rel=1e-12)
    assert paper_sigma(12288, 2000) == pytest.approx(0.00223606797749979, rel=1e-12)
    # at 64 px the expected noise norm sqrt(m) * sigma is 0.1 for every m
    for m in (100, 2000, 6000):
        assert math.sqrt(m) * paper_sigma(12288, m) == pytest.approx(0.1)
    # 128 px: four times n, noise energy per measurement scaled up by 4
    assert paper_sigma(49152, 8000) == pytest.approx(0.1 * math.sqrt(4 / 8000))
    with pytest.raises(GSError):
        paper_sigma(12288, 0)


def test_noise_sigma_specs():
    assert noise_sigma("paper", 12288, 2000) == paper_sigma(12288, 2000)
    assert noise_sigma(" Paper ", 12288, 2000) == paper_sigma(12288, 2000)
    assert noise_sigma("none", 12288, 2000) == 0.0
    assert noise_sigma("0.05", 12288, 2000) == 0.05
    assert noise_sigma(0.05, 12288, 2000) == 0.05
    assert noise_sigma(0, 12288, 2000) == 0.0
    for bad in ("loud", "-0.1", -0.1, "nan", float("inf"), "", None, True, [0.1]):
        with pytest.raises(GSError):
            noise_sigma(bad, 12288, 2000)


def test_noise_level_matches_sigma():
    op = GaussianOperator(2000, 200, seed=1)
    x = np.random.default_rng(1).random((4, 200), dtype=np.float32)
    sigma = 0.05
    y = measure(x, op, sigma, seed=9)
    assert y.shape == (4, 2000) and y.dtype == np.float32
    eta = y.astype(np.float64) - op.forward(x).astype(np.float64)
    # 8000 samples: relative std of the std estimate ~ 0.8%; allow 4%.
    assert eta.std() == pytest.approx(sigma, rel=4e-2)
    assert abs(eta.mean()) < 4 * sigma / math.sqrt(eta.size)


def test_paper_noise_norm_at_64px():
    op = GaussianOperator(500, 12288, seed=0)
    x = np.random.default_rng(2).random((2, 12288), dtype=np.float32)
    eta = measure(x, op, paper_sigma(op.n, op.m), seed=0) - op.forward(x)
    norms = np.linalg.norm(eta.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 0.1, rtol=0.15)


def test_measure_determinism_and_streams(op, x):
    y1 = measure(x, op, 0.1, seed=3)
    assert np.array_equal(y1, measure(x, op, 0.1, seed=3))
    assert not np.array_equal(y1, measure(x, op, 0.1, seed=4))
    # the noise stream is its own: independent truth from the documented seed
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([3, 2**31 - 1])))
    want = op.forward(x) + g.standard_normal((3, M), dtype=np.float32) * np.float32(0.1)
    assert np.array_equal(y1, want)
    # sigma 0 gives the noiseless A x exactly
    assert np.array_equal(measure(x, op, 0.0, seed=3), op.forward(x))


def test_measure_identity_operator(x):
    y = measure(x, IdentityOperator(N), 0.0, seed=0)
    assert np.array_equal(y, x)


def test_measure_bad_inputs(op, x):
    with pytest.raises(GSError):
        measure(x[:, :-1], op, 0.1, seed=0)
    with pytest.raises(GSError):
        measure(x[0], op, 0.1, seed=0)
    with pytest.raises(GSError):
        measure(x, op, -1.0, seed=0)
    with pytest.raises(GSError):
        measure(x, op, 0.1, seed=-1)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(GSError):
        measure(bad, op, 0.1, seed=0)


# -- files ------------------------------------------------------------------------------------


def test_round_trip(tmp_path, op, x):
    y = measure(x, op, 0.01, seed=4)
    path = tmp_path / "meas.npy"
    write_measurements(path, y, _sidecar(op, sigma=np.float32(0.01), image_shape=[3, 10, 10]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meas.json", "meas.npy"]  # no temp files

    y2, meta = read_measurements(path)
    assert y2.dtype == np.float32 and np.array_equal(y2, y)
    assert meta["format"] == "gs-onnx-measurements" and meta["format_version"] == 2
    assert meta["shape"] == [3, M] and meta["dtype"] == "float32"
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["sigma"] == pytest.approx(0.01) and meta["image_shape"] == [3, 10, 10]
    # plain np.load reads it too (no custom container)
    assert np.array_equal(np.load(path, allow_pickle=False), y)

    op2 = operator_for(meta)
    assert isinstance(op2, GaussianOperator) and np.array_equal(op2.matrix(), op.matrix())
    np.testing.assert_array_equal(op2.forward(x), op.forward(x))


def test_overwrite_replaces_both_files(tmp_path, op, x):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    y = measure(x, op, 0.5, seed=1)
    write_measurements(path, y, _sidecar(op, noise=0.5))
    y2, meta = read_measurements(path)
    assert np.array_equal(y2, y) and meta["noise"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meas.json", "meas.npy"]


def test_write_refuses_bad_input(tmp_path, op, x):
    y = measure(x, op, 0.0, seed=0)
    with pytest.raises(GSError):
        write_measurements(tmp_path / "meas.json", y, _sidecar(op))
    with pytest.raises(GSError):
        write_measurements(tmp_path / "missing" / "meas.npy", y, _sidecar(op))
    with pytest.raises(GSError):
        write_measurements(tmp_path / "meas.npy", y[0], _sidecar(op))
    with pytest.raises(GSError):
        write_measurements(tmp_path / "meas.npy", y, _sidecar(op, m=M + 1))
    bad = y.copy()
    bad[1, 2] = np.inf
    with pytest.raises(GSError):
        write_measurements(tmp_path / "meas.npy", bad, _sidecar(op))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_previous_files_and_no_temps(tmp_path, op, x, monkeypatch):
    path = tmp_path / "meas.npy"
    y = measure(x, op, 0.0, seed=0)
    write_measurements(path, y, _sidecar(op))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    with pytest.raises(TypeError):  # unserialisable sidecar: nothing may be touched
        write_measurements(path, y + 1, _sidecar(op, junk=object()))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    def failing_replace(src, dst):
        raise OSError("disk full")

    import gs_onnx.io.publish as pubmod

    monkeypatch.setattr(pubmod.os, "replace", failing_replace)
    with pytest.raises(GSError, match="cannot write"):  # one line naming the path, not a traceback
        write_measurements(path, y + 1, _sidecar(op))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_crash_between_replaces_is_detected(tmp_path, op, x, monkeypatch):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    real_replace, calls = os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError("crash")
        real_replace(src, dst)

    import gs_onnx.io.publish as pubmod

    monkeypatch.setattr(pubmod.os, "replace", replace_once)
    with pytest.raises(GSError):
        write_measurements(path, measure(x, op, 0.3, seed=1), _sidecar(op))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meas.json", "meas.npy"]
    with pytest.raises(GSError, match="do not match their sidecar"):
        read_measurements(path)


# -- refusals ---------------------------------------------------------------------------------


def _craft(path: Path, arr, allow_pickle=False, **fields) -> None:
    """Write ``arr`` with np.save and a sidecar whose sha256 matches, so one check at a time fails."""
    np.save(path, arr, allow_pickle=allow_pickle)
    shape = list(np.shape(arr))
    m = shape[1] if len(shape) == 2 else 1
    meta = {
        "format": "gs-onnx-measurements",
        "format_version": 1,
        "shape": shape,
        "dtype": "float32",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "image_shape": [1, 1, max(m, 1) * 2],
        "operator": {"type": "gaussian", "m": m, "n": max(m, 1) * 2, "seed": 0},
    }
    meta.update(fields)
    path.with_suffix(".json").write_text(json.dumps(meta))


def _refused(path, match: str | None = None) -> str:
    with pytest.raises(GSError) as e:
        read_measurements(path)
    msg = str(e.value)
    assert "\n" not in msg and msg
    if match:
        assert match in msg
    return msg


def test_crafted_good_file_is_accepted_only_when_trusted(tmp_path):
    """A format_version 1 sidecar carries neither meta_sha256 nor operator_fingerprint: no downgrade path around
    them unless the caller vouches for the file (--trust-sidecar)."""
    y = np.ones((2, 5), np.float32)
    _craft(tmp_path / "y.npy", y, m=5)
    assert "--trust-sidecar" in _refused(tmp_path / "y.npy", "meta_sha256 is missing (format_version 1)")
    assert np.array_equal(read_measurements(tmp_path / "y.npy", trust_sidecar=True)[0], y)


def test_refuses_missing_file(tmp_path):
    _refused(tmp_path / "nope.npy", "not found")


def test_refuses_missing_sidecar(tmp_path, op, x):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    path.with_suffix(".json").unlink()
    _refused(path, "sidecar not found")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"gs-onnx-measurements"', "\xff\xfe"])
def test_refuses_invalid_sidecar_json(tmp_path, op, x, text):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    path.with_suffix(".json").write_bytes(text.encode("latin-1"))
    _refused(path, "sidecar")


@pytest.mark.parametrize("fields", [{"format": "something-else"}, {"format": None}, {"format_version": 2}])
def test_refuses_wrong_format_tag_or_version(tmp_path, fields):
    _craft(tmp_path / "y.npy", np.ones((2, 5), np.float32), **fields)
    _refused(tmp_path / "y.npy")


def test_refuses_tampered_npy(tmp_path, op, x):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # flip one bit of the last value
    path.write_bytes(bytes(data))
    _refused(path, "measurements do not match their sidecar")


def test_refuses_tampered_sidecar_hash(tmp_path, op, x):
    path = tmp_path / "meas.npy"
    write_measurements(path, measure(x, op, 0.0, seed=0), _sidecar(op))
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["sha256"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    _refused(path, "measurements do not match their sidecar")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_refuses_nan_and_inf(tmp_path, bad):
    y = np.ones((2, 5), np.float32)
    y[1, 3] = bad
    _craft(tmp_path / "y.npy", y)
    _refused(tmp_path / "y.npy", "NaN or Inf")


def test_refuses_wrong_dtype(tmp_path):
    _craft(tmp_path / "y.npy", np.ones((2, 5), np.float64))
    _refused(tmp_path / "y.npy", "float32")


@pytest.mark.parametrize("arr", [np.ones(5, np.float32), np.ones((1, 2, 5), np.float32), np.float32(1)])
def test_refuses_not_2d(tmp_path, arr):
    _craft(tmp_path / "y.npy", arr)
    _refused(tmp_path / "y.npy", "2-D")


def test_refuses_shape_mismatch(tmp_path):
    _craft(tmp_path / "y.npy", np.ones((2, 5), np.float32), shape=[5, 2])
    _refused(tmp_path / "y.npy", "sidecar shape")
    _craft(tmp_path / "y.npy", np.ones((2, 5), np.float32), shape=None)
    _refused(tmp_path / "y.npy", "sidecar shape")


def test_refuses_m_mismatch(tmp_path):
    _craft(tmp_path / "y.npy", np.ones((2, 5), np.float32), m=6)
    _refused(tmp_path / "y.npy", "m=6")


def test_refuses_pickled_object_array_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    evil = np.empty((1, 1), dtype=object)
    evil[0, 0] = _Trap(str(marker))
    _craft(tmp_path / "y.npy", evil, allow_pickle=True)
    _refused(tmp_path / "y.npy")
    assert not marker.exists()


def test_refuses_raw_pickle_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "y.npy"
    path.write_bytes(pickle.dumps(_Trap(str(marker))))
    meta = {"format": "gs-onnx-measurements", "format_version": 1, "shape": [1, 1],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(meta))
    _refused(path)
    assert not marker.exists()
    # sanity: the trap does fire when unpickled, so the check above is meaningful
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_refuses_truncated_npy(tmp_path):
    path = tmp_path / "y.npy"
    _craft(path, np.ones((4, 50), np.float32))
    data = path.read_bytes()[:100]
    path.write_bytes(data)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(meta))
    _refused(path)


class _Trap:
    """Unpickling this creates a directory (os.mkdir resolves without importing this test module)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


# -- operator_for -----------------------------------------------------------------------------


def test_operator_for_errors(op):
    with pytest.raises(GSError):
        operator_for({})
    with pytest.raises(GSError):
        operator_for({"operator": "gaussian"})
    with pytest.raises(GSError):
        operator_for({"operator": {"type": "nope"}})
    with pytest.raises(GSError):
        operator_for({"operator": op.describe(), "n": N + 1})
    with pytest.raises(GSError, match="GB"):
        operator_for({"operator": op.describe()}, max_bytes=1)
    assert isinstance(operator_for({"operator": {"type": "identity", "n": 4}}), IdentityOperator)
