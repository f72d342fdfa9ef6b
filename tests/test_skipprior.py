"""The skip-source prior (issue 28): its statistics are the generator's own, its gradient is the derivative of
its value, gs-recover runs it where the cut frees a skip source, and on the shipped BEGAN it removes the
lattice that plain recovery draws."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gs_onnx import cli, load_model
from gs_onnx.engine.block import Block
from gs_onnx.generator.latent import LatentLayout
from gs_onnx.metrics import seam
from gs_onnx.solve.skipprior import SkipPrior, skip_sources, with_skip_prior
from conftest import SAMPLES


@pytest.fixture(scope="module")
def began():
    return load_model("began")


def test_skip_sources_are_the_inputs_several_blocks_read(began):
    assert skip_sources(began, 0) == []                 # c = 0: z, read by block 0 only
    assert skip_sources(began, 1) == ["h1"]             # c = 1: h1 is the main input and the skip source
    assert skip_sources(began, 2) == ["h1"] and skip_sources(began, 4) == ["h1"]
    assert skip_sources(load_model("dcgan"), 1) == []


def test_statistics_are_those_of_the_generator_own_activations(began):
    prior = SkipPrior(began, 2, 1e-3, device="cpu")
    z = np.random.default_rng(0).uniform(-1, 1, (512, 64)).astype(np.float32)   # the model's prior, same seed
    h1 = Block(began, began.blocks[0], "cpu").forward({"z": z})["h1"].astype(np.float64)
    np.testing.assert_allclose(prior.mean["h1"], h1.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prior.std["h1"], h1.std(axis=(0, 2, 3)), rtol=1e-5)


def test_gradient_matches_finite_differences(began):
    prior = SkipPrior(began, 2, 0.3, device="cpu")
    layout = LatentLayout({"h2": (128, 16, 16), "h1": (128, 8, 8)})
    rng = np.random.default_rng(1)
    Z = rng.normal(0, 1, (2, layout.size))
    p, g = prior.penalty(Z, layout)
    assert np.all(g[:, :layout.sizes["h2"]] == 0)             # h2 is not a skip source
    for row in range(2):
        for j in rng.integers(layout.sizes["h2"], layout.size, 5):
            e = np.zeros(layout.size); e[j] = 1e-5
            fd = (prior.penalty(Z[row] + e, layout)[0][0] - prior.penalty(Z[row] - e, layout)[0][0]) / 2e-5
            assert fd == pytest.approx(g[row, j], rel=1e-5, abs=1e-12)
    assert p[0] > 0 and prior.penalty(Z, layout)[0][0] == pytest.approx(p[0])


def test_wrapper_adds_the_term_and_keeps_everything_else(began):
    class Fake:
        layout = LatentLayout({"h2": (128, 16, 16), "h1": (128, 8, 8)})
        held_out = 7.0

        def with_measurements(self, y, w=None):
            return self

        def value_and_grad(self, z):
            return 1.0, np.ones_like(z)

        def measurement_error(self, lat):
            return 2.0

    prior = SkipPrior(began, 2, 0.5, device="cpu")
    obj = with_skip_prior(Fake(), prior).with_measurements(None)
    z = np.random.default_rng(2).normal(size=Fake.layout.size)
    f, g = obj.value_and_grad(z)
    p, gp = prior.penalty(z, Fake.layout)
    assert f == pytest.approx(1.0 + p[0]) and np.allclose(g, 1.0 + gp[0])
    assert obj.measurement_error({}) == 2.0 and obj.held_out == 7.0 and not hasattr(obj, "value_and_grad_batch")
    assert with_skip_prior(Fake(), None).__class__ is Fake
    assert with_skip_prior(Fake(), SkipPrior(began, 2, 0.0)).__class__ is Fake


def test_skip_prior_option_errors_are_one_line(tmp_path):
    from test_cli import assert_one_line_error, invoke, measure_pair

    meas = measure_pair(tmp_path)
    assert_one_line_error(invoke(cli.recover_main, [meas, "--method", "lasso-dct", "--skip-prior", "1e-3",
                                                    "-o", tmp_path / "a"]), "--skip-prior does not apply")
    assert_one_line_error(invoke(cli.recover_main, [meas, "--skip-prior", "-1", "-o", tmp_path / "b"]),
                          "--skip-prior must be a number >= 0")


def test_began_recovery_with_the_prior_draws_no_lattice(tmp_path):
    """End to end on the shipped BEGAN (a structured operator to keep it short; --method gs: the prior is gs's; the
    default for this operator, gs-pnp, ends with the denoiser): the same measurements and budget with and without
    the prior; without it the 16-px lattice shows (seam well above the truth's), with it the seam comes back near
    the truth's."""
    img = SAMPLES / "celeba_aligned_00001.jpg"
    r = CliRunner().invoke(cli.measure_main, [str(img), "--model", "began", "--operator", "srdct", "--ratio", "0.1628",
                                              "-o", str(tmp_path / "m.npy")])
    assert r.exit_code == 0, r.output
    out = {}
    for w in ("0", "0.001"):
        r = CliRunner().invoke(cli.recover_main, [str(tmp_path / "m.npy"), "--method", "gs", "--model", "began",
                                                  "--cut", "2", "--budget", "paper", "--restarts", "1", "--max-iter", "60",
                                                  "--skip-prior", w, "--reference", str(img),
                                                  "-o", str(tmp_path / f"o{w}")])
        assert r.exit_code == 0, r.output
        out[w] = json.loads((tmp_path / f"o{w}" / "report.json").read_text())
    plain, prior = out["0"]["images"][0], out["0.001"]["images"][0]
    assert "skip_prior" not in out["0"] and out["0.001"]["skip_prior"]["inputs"] == ["h1"]
    truth = plain["seam"]["truth"]
    assert plain["seam"]["recovered"] > truth + 0.2
    assert prior["seam"]["recovered"] < plain["seam"]["recovered"] - 0.15
    assert prior["psnr"] > plain["psnr"] - 0.5


@pytest.mark.parametrize("bad", [{"weight": -1}, {"weight": "big"}, {"weight": float("nan")}, {}, 0.001, {"weight": True}])
def test_a_manifest_with_a_bad_skip_prior_is_refused(tmp_path, bad, tiny_models):
    import shutil

    from gs_onnx.errors import GSError
    from gs_onnx.generator.manifest import load_manifest

    dst = tmp_path / "m"
    shutil.copytree(tiny_models["began"][1], dst)
    d = json.loads((dst / "manifest.json").read_text())
    d["recommended"]["skip_prior"] = bad
    (dst / "manifest.json").write_text(json.dumps(d))
    # a NaN is refused by the strict JSON reader already, naming where it sits
    with pytest.raises(GSError, match="recommended.skip_prior must be an object with a weight >= 0|"
                                      r"recommended\.skip_prior\.weight is NaN"):
        load_manifest(dst)
    d["recommended"]["skip_prior"] = {"weight": 0.002, "validated": "test"}
    (dst / "manifest.json").write_text(json.dumps(d))
    assert load_manifest(dst).recommended["skip_prior"]["weight"] == 0.002


def test_the_python_api_runs_the_same_prior_as_gs_recover(began, tiny_models):
    """gs_onnx.recover applies the model's recommended weight (as gs-recover and gs-demo do), a given weight, or none."""
    from gs_onnx import CutGenerator, GaussianOperator, recover
    from gs_onnx.generator.manifest import load_manifest
    from gs_onnx.solve.restart import Budget
    from gs_onnx.solve.skipprior import prior_for

    assert prior_for(began, 2).weight == began.recommended["skip_prior"]["weight"] == 0.002
    assert prior_for(began, 2, 0) is None and prior_for(began, 0) is None and prior_for(began, 2, 0.5).weight == 0.5
    man = load_manifest(tiny_models["began"][1])
    assert prior_for(man, 2) is None                       # no recommendation in this manifest: none
    gen = CutGenerator(man, 2, device="cpu")
    A = GaussianOperator(200, man.n, seed=0)
    y = A.forward(np.random.default_rng(0).random((1, man.n), dtype=np.float32))[0]
    runs = {w: recover(gen, A, y, restarts=1, budget=Budget(max_iter=15, max_fun=20), skip_prior=w) for w in (0, 5.0)}
    assert not np.allclose(runs[0].image, runs[5.0].image)
    h1 = {w: runs[w].latents["h1"] for w in runs}
    mu = prior_for(man, 2, 5.0).mean["h1"][:, None, None]
    assert np.abs(h1[5.0] - mu).mean() < np.abs(h1[0] - mu).mean()   # the prior pulls h1 to the generator's own
