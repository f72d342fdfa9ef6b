"""``gs-experiment budget`` (gs_onnx.experiment.budget): fixed budgets and held-out rules replayed on traces,
checked against hand-made traces whose answers are known, and the preset end to end for other measurement
models (``--conditions``); stopping plans per operator (``recommended.stopping.operators``)."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from gs_onnx.errors import GSError
from gs_onnx.experiment import budget as B
from gs_onnx.solve.stopping import VALIDATED_OPERATORS, stopping_plan, validated_operators

from conftest import SAMPLES


def _trace(psnr, err, held, seconds=None):
    k = len(psnr)
    return {"iteration": list(range(k)), "f": [0.0] * k, "held": list(held), "psnr": list(psnr), "err": list(err),
            "seconds": list(seconds if seconds is not None else np.arange(k, dtype=float))}


# Two restarts of one image, 6 iterates each. Restart 0: the measurement error keeps falling, PSNR peaks at
# iterate 2; its held-out loss is lowest at iterate 2. Restart 1: worse everywhere except a lower measurement
# error at the end.
R0 = _trace(psnr=[10, 20, 25, 24, 23, 22], err=[9, 5, 3, 2, 1.5, 1.2], held=[9, 5, 2, 3, 4, 5])
R1 = _trace(psnr=[10, 15, 18, 19, 19, 18], err=[9, 6, 4, 2.5, 1.4, 1.1], held=[9, 6, 4, 3.5, 3.6, 3.7])
IMAGES = {0: {0: R0, 1: R1}}


def test_fixed_budget_picks_the_lowest_measurement_error_at_k():
    assert B.fixed_budget(IMAGES, 2, 1) == ([25], [2.0])
    assert B.fixed_budget(IMAGES, 2, 2) == ([25], [4.0])     # restart 0 has the lower error at iterate 2
    assert B.fixed_budget(IMAGES, 5, 2) == ([18], [10.0])    # at the end restart 1 fits y better (PSNR lower)
    assert B.fixed_budget(IMAGES, 50, 1) == ([22], [5.0])    # past the trace: the last iterate
    assert B.fixed_budget(IMAGES, 2, 3) == ([], [])          # not enough restarts traced


def test_holdout_replay_stops_patience_past_the_best_and_returns_the_best():
    r = B.replay(R0, patience=2)
    assert (r["best"], r["stop"], r["psnr"], r["held"], r["seconds"]) == (2, 4, 25, 2, 4.0)
    r = B.replay(R0, patience=10)                            # never stops early: the end of the trace
    assert (r["best"], r["stop"]) == (2, 5)
    h = B.holdout_rule(IMAGES, restarts=2, patience=2)
    assert h["psnr"] == [25] and h["choice"] == [(0, 2)]     # the lower held-out loss wins
    assert h["iterations"] == [4 + 5] and h["seconds"] == [4.0 + 5.0]
    pruned = B.holdout_rule(IMAGES, restarts=2, patience=2, prune=1)
    assert pruned["choice"] == [(0, 2)] and pruned["iterations"] == [1 + 4]


def test_refit_reads_the_paper_trace_at_the_chosen_iterate():
    paper = {0: {0: _trace(psnr=[10, 21, 26, 27, 26, 25], err=[9, 5, 3, 2, 1, 1], held=[0] * 6), 1: R1}}
    f = B.refit_rule(IMAGES, paper, restarts=1, patience=2)
    assert f["psnr"] == [26] and f["iterations"] == [4 + 2] and f["seconds"] == [4.0 + 2.0]


def _rows(setting=None, ratio=0.1, operator="gaussian"):
    out = []
    for variant, tr in (("paper", (R0, R1)), ("holdout 0.1", (R0, R1))):
        for r, t in enumerate(tr):
            row = {"preset": "budget", "model": "dcgan", "cut": 1, "ratio": ratio, "dataset": "celeba-train",
                   "variant": variant, "index": 0, "restart": r, "trace": t, "max_iter": 5, "operator": operator}
            if setting:
                row["setting"] = setting
            out.append(row)
    return out


def test_conditions_stay_apart_in_tables_and_figures(tmp_path):
    """Two measurement models with the same m/n (blur and denoising both keep n values) are two conditions."""
    rows = _rows() + _rows("blur sigma=2.0", 1.0, "blur") + _rows("identity sigma=0.1", 1.0, "identity")
    text = B.markdown(rows)
    for title in ("## dcgan c=1, m/n = 0.1, celeba-train", "## dcgan c=1, blur sigma=2.0, m/n = 1.0, celeba-train",
                  "## dcgan c=1, identity sigma=0.1, m/n = 1.0, celeba-train"):
        assert text.count(title) == 1, title
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(p.name for p in B.figure(plt, rows, tmp_path))
    assert names == ["budget_dcgan_0.1_celeba-train.png", "budget_dcgan_blur-sigma-2.0_1.0_celeba-train.png",
                     "budget_dcgan_identity-sigma-0.1_1.0_celeba-train.png"]


def test_budget_preset_traces_other_measurement_models(tmp_path):
    """End to end on two bundled faces: inpainting traced under both rules, the rows carry the setting,
    every trace ends where the run ended and its last PSNR is the row's."""
    from click.testing import CliRunner

    from gs_onnx.cli.experiment import main

    out = tmp_path / "b"
    faces = tmp_path / "faces"  # two bundled CelebA faces: no data set outside the clone
    faces.mkdir()
    for name in ("celeba64_182638.jpg", "celeba64_182639.jpg"):
        shutil.copy(SAMPLES / name, faces / name)
    r = CliRunner().invoke(main, ["budget", "--models", "dcgan", "--conditions", "mask30", "--images", "2",
                                  "--datasets", str(faces),
                                  "--restarts", "2", "--max-iter", "6", "--rules", "paper,holdout", "-o", str(out),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2
    for row in rows:
        assert row["operator"] == "mask" and row["setting"] == "mask keep=0.3"
        assert row["ratio"] == round(1229 / 4096, 6)  # round(0.3 x 64 x 64) pixels kept, every channel
        t = row["trace"]
        assert t["iteration"][0] == 0 and t["iteration"][-1] <= 6
        assert t["psnr"][-1] == pytest.approx(row["psnr"], abs=1e-3) or row["variant"] != "paper"
    text = (out / "summary.md").read_text()
    assert "## dcgan c=1, mask keep=0.3, m/n = 0.300049, faces" in text
    assert (out / "budget_dcgan_mask-keep-0.3_0.300049_faces.png").is_file()


@pytest.mark.parametrize("args, needle", [
    (["--conditions", "mask99"], "unknown condition 'mask99'"),
    (["--conditions", "mask10", "--ratios", "0.1"], "give one of them"),
])
def test_budget_preset_bad_conditions_one_line(tmp_path, args, needle):
    from click.testing import CliRunner

    from gs_onnx.cli.experiment import main

    r = CliRunner().invoke(main, ["budget", "--models", "dcgan", *args, "-o", str(tmp_path / "x")])
    assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


def test_stopping_plans_apply_to_the_operators_they_were_validated_on():
    rec = {"optimizer": {"restarts": 3, "max_iter": 500}, "stopping": {"rule": "fixed", "restarts": 1, "max_iter": 100}}
    paper = {"rule": "fixed", "restarts": 3, "max_iter": 500}
    plan = {"rule": "fixed", "restarts": 1, "max_iter": 100}
    assert validated_operators(rec) == VALIDATED_OPERATORS == ("gaussian", "srdct")
    assert stopping_plan(rec, "gaussian") == plan and stopping_plan(rec, "mask") == paper
    rec2 = copy.deepcopy(rec)
    rec2["stopping"]["operators"] = ["gaussian", "mask"]
    assert stopping_plan(rec2, "mask") == plan and stopping_plan(rec2, "srdct") == paper
    assert stopping_plan({"optimizer": rec["optimizer"]}, "gaussian") == paper  # no plan: the paper's budget
    rec2["stopping"]["per_operator"] = {"blur": {"rule": "holdout", "patience": 7, "max_iter": 50}}
    assert stopping_plan(rec2, "blur") == {"rule": "holdout", "restarts": 3, "max_iter": 50, "holdout": 0.1,
                                           "patience": 7}
    assert stopping_plan(rec2, "mask") == plan and stopping_plan(rec2, "fourier") == paper


def test_the_shipped_plans_per_operator():
    """What docs/physics.md promises: every registered operator has a validated plan for the shipped dcgan and
    began (began: 1 x 200 beyond compressed sensing, 1 x 50 for a missing box)."""
    from gs_onnx.generator import registry
    from gs_onnx.physics import measuring_types

    dcgan, began = registry.load("dcgan").recommended, registry.load("began").recommended
    for kind in measuring_types():
        expected = {"fourier": 200, "blur": 200, "identity": 50}.get(kind, 100)
        assert stopping_plan(dcgan, kind) == {"rule": "fixed", "restarts": 1, "max_iter": expected}, kind
        if kind not in ("gaussian", "srdct"):
            want = 50 if kind == "box" else 200
            assert stopping_plan(began, kind) == {"rule": "fixed", "restarts": 1, "max_iter": want}, kind


@pytest.mark.parametrize("key, bad, needle", [
    ("operators", [], "operators must be a non-empty list"),
    ("operators", "mask", "operators must be a non-empty list"),
    ("operators", [1], "operators must be a non-empty list"),
    ("operators", [""], "operators must be a non-empty list"),
    ("per_operator", ["blur"], "per_operator must map operator types to plans"),
    ("per_operator", {"blur": 200}, "per_operator must map operator types to plans"),
    ("per_operator", {"blur": {"max_iter": 0}}, "per_operator.blur.max_iter"),
    ("per_operator", {"blur": {"rule": "sometimes"}}, "per_operator.blur.rule"),
])
def test_a_manifest_with_bad_plan_operators_is_refused(tmp_path, key, bad, needle):
    import shutil

    from gs_onnx.generator import registry
    from gs_onnx.generator.manifest import load_manifest

    src = registry.load("dcgan").root
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    d = json.loads((dst / "manifest.json").read_text())
    d["recommended"]["stopping"][key] = bad
    (dst / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(GSError, match=needle):
        load_manifest(dst)


def test_an_operator_without_a_validated_plan_gets_a_note(tmp_path):
    """A model whose plan does not cover an operator (here began with its mask plan removed): --budget auto falls
    back to the paper's budget and says so; any budget flag, --budget paper, or a validated operator silences
    the note. The shipped models have a plan for every operator type."""
    import shutil

    from gs_onnx.generator.registry import load
    from gs_onnx.physics import make, measuring_types
    from gs_onnx.solve import Settings, make_solver
    from gs_onnx.solve.stopping import has_plan

    for name in ("began", "dcgan"):
        assert all(has_plan(load(name).recommended, k) for k in measuring_types()), name
    models = tmp_path / "models"
    shutil.copytree(load("began").root, models / "began")
    d = json.loads((models / "began" / "manifest.json").read_text())
    del d["recommended"]["stopping"]["per_operator"]["mask"]
    (models / "began" / "manifest.json").write_text(json.dumps(d))

    def solver(model, kind, shape, **kw):
        op = make(kind, shape, 0, **({"keep": 0.3} if kind == "mask" else {"m": 100}))
        sidecar = {"operator": op.describe(), "image_shape": list(shape), "m": op.m, "n": op.n, "model": model}
        return make_solver("gs", np.zeros((1, op.m), np.float32), sidecar,
                           Settings(model=model, models_dir=str(models), **kw), op=op)

    s = solver("began", "mask", (3, 128, 128))
    assert s.note.startswith("began's stopping plan was not validated on mask measurements")
    assert "(3 restarts x 500 iterations)" in s.note and s.header["note"] == s.note
    assert (s.restarts, s.budget.max_iter) == (3, 500)
    for kw in ({"max_iter": 200}, {"restarts": 1}, {"stop": "holdout"}, {"budget": "paper"}):
        assert solver("began", "mask", (3, 128, 128), **kw).note is None, kw
    assert solver("began", "srdct", (3, 128, 128)).note is None
    assert solver("dcgan", "mask", (3, 64, 64)).note is None


def test_gs_recover_prints_the_note_unless_quiet(tmp_path, dcgan_meas_010, monkeypatch):
    from gs_onnx import cli
    from gs_onnx.solve.methods import _restart

    from test_cli import invoke

    monkeypatch.setattr(_restart, "unvalidated_note", lambda *a: "a budget note")
    r = invoke(cli.recover_main, [dcgan_meas_010, "--max-iter", "2", "-o", tmp_path / "a"])
    assert r.exit_code == 0 and "note: a budget note" in r.stderr
    assert json.loads((tmp_path / "a" / "report.json").read_text())["note"] == "a budget note"
    r = invoke(cli.recover_main, [dcgan_meas_010, "--max-iter", "2", "-q", "-o", tmp_path / "b"])
    assert r.exit_code == 0 and "note:" not in r.stderr
