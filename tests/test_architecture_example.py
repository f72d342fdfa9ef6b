"""docs/architecture.md's worked example, run as written: a toy method (projected Landweber iteration) added with
one class and one registry entry is a ``--method`` of gs-recover and of the Python API, with the same report as
every other method, its settings checked by its traits; the registry's doctest in the same page."""
from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.io.images import load_image
from gs_onnx.io.measurement import read_measurements
from gs_onnx.physics import operator_for
from gs_onnx.solve import Settings, make_solver, registry

from test_cli import IMG_A, assert_one_line_error, invoke

PAGE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def example_code() -> str:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Adding a method: a worked example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def landweber():
    """The page's method registered for one test, and gone after it."""
    registry.unregister("landweber")
    namespace: dict = {}
    exec(compile(example_code(), str(PAGE), "exec"), namespace)
    yield namespace
    registry.unregister("landweber")
    assert "landweber" not in registry.available()


@pytest.fixture(scope="module")
def meas(tmp_path_factory):
    out = tmp_path_factory.mktemp("landweber") / "mask.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "mask", "--keep", "0.5", "-o", out])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return out


def test_the_toy_method_runs_through_gs_recover(tmp_path, meas, landweber):
    m = registry.method("landweber")
    assert (m.generator, m.restarts, m.planned, m.settings) == (False, False, False, frozenset({"max_iter"}))
    assert "landweber" in registry.available()
    r = invoke(cli.recover_main, [meas, "--method", "landweber", "--max-iter", "30", "--reference", IMG_A,
                                  "-o", tmp_path / "out"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["method"] == "landweber" and rep["max_iter"] == 30
    (row,) = rep["images"]
    x = np.load(tmp_path / "out" / "recovered.npy", allow_pickle=False)[0]
    y, sidecar = read_measurements(meas)
    op = operator_for(sidecar)
    # an independent truth: on a mask, Landweber with step 1 puts the measured pixels in place at once and leaves
    # the others at 0 (its start): the image is the zero-filled measurement, clipped
    zero_filled = np.clip(op.adjoint(y), 0, 1).reshape(x.shape)
    np.testing.assert_allclose(x, zero_filled, atol=1e-6)
    assert row["measurement_error"] == pytest.approx(float(np.linalg.norm(op.forward(x.reshape(1, -1)) - y)), rel=1e-5)
    assert row["psnr"] < 15  # half the pixels black: no prior, as expected
    assert (tmp_path / "out" / "compare_001.png").is_file()


def test_its_traits_refuse_what_it_does_not_read(tmp_path, meas, landweber):
    r = invoke(cli.recover_main, [meas, "--method", "landweber", "--cut", "1", "-o", tmp_path / "out"])
    assert_one_line_error(r, "--cut does not apply to --method landweber")
    assert not (tmp_path / "out").exists()


def test_the_python_api_runs_it_too(meas, landweber):
    y, sidecar = read_measurements(meas)
    solver = make_solver("landweber", y, sidecar, Settings(max_iter=3))
    image, fields = solver.solve(0, y[0], lambda f, w: None)
    assert image.shape == (3, 64, 64) and fields["evaluations"] == 3
    assert 0 <= image.min() and image.max() <= 1
    assert load_image(IMG_A, 64).shape == image.shape


def test_unknown_methods_are_refused_in_one_line(tmp_path, meas):
    r = invoke(cli.recover_main, [meas, "--method", "landweber", "-o", tmp_path / "out"])
    assert_one_line_error(r, "unknown method 'landweber'")


def test_the_pages_registry_doctest():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(PAGE.read_text(encoding="utf-8"), {}, str(PAGE), str(PAGE), 0)
    assert test.examples, "the page has its >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0
