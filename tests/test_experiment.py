"""gs-experiment: tasks, the resumable results file, every preset end to end in a tiny configuration (rows,
summary.md, figures), restart selection, the local pool and Ray, and bad input.

Truths used: a task's restart r is restart r of :func:`gs_onnx.solve.restart.recover` on the same measurements
(same init, same objective); the summary's numbers are recomputed here from the rows; a rerun runs nothing;
a lost row is recomputed and only it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gs_onnx.generator import registry
from gs_onnx.errors import GSError
from gs_onnx.cli import experiment as ecli
from gs_onnx.experiment.report import cells, markdown, winners
from gs_onnx.experiment.results import ResultsFile
from gs_onnx.experiment.cache import clear_caches
from gs_onnx.experiment.task import Task, run_task

SAMPLES = Path(registry.__file__).resolve().parents[1] / "samples"
# the paper's budget: one task per restart (the mechanics of tasks, rows and winners); the default budget, the
# model's plan as gs-recover runs it, is tested on its own below
TINY = ["--models", "dcgan", "--datasets", str(SAMPLES), "--images", "2", "--ratios", "0.05", "--max-iter", "3",
        "--restarts", "2", "--no-progress", "--budget", "paper"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("GS_ONNX_MODELS", raising=False)


def run(args, out: Path):
    r = CliRunner().invoke(ecli.main, [str(a) for a in args] + ["-o", str(out)])
    return r


def ok(r):
    assert r.exit_code == 0, (r.output, r.stderr, r.exception)
    return r


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def assert_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100


# ------------------------------------------------------------------------------------------- units

def task(**kw) -> Task:
    base = dict(preset="cs", model="dcgan", method="gs", dataset="s", image=str(SAMPLES / "celeba64_182638.jpg"),
                index=0, ratio=0.05, max_iter=4)
    base.update(kw)
    return Task(**base)


def test_task_key_round_trip():
    t = task(options=(("steps", 3),), variant="x")
    assert Task.from_dict(json.loads(json.dumps(t.as_dict()))) == t
    assert Task.from_dict(t.as_dict()).key() == t.key()
    assert task(restart=1).key() != t.key()


def test_results_file_append_resume_and_torn_tail(tmp_path):
    rf = ResultsFile(tmp_path / "r")
    a, b, c = task(restart=0), task(restart=1), task(restart=2)
    rf.append(a, {"psnr": np.float32(20.5), "bad": float("nan")})
    rf.append(b, {"psnr": 21.0})
    assert [r["psnr"] for r in rf.rows()] == [20.5, 21.0] and rf.rows()[0]["bad"] is None
    assert rf.pending([a, b, c, c]) == [c]
    with open(rf.path, "a") as f:  # a crash in the middle of writing a row
        f.write('{"key": "half')
    assert len(rf.rows()) == 2
    rf.append(c, {"psnr": 22.0})
    assert [r["psnr"] for r in rf.rows()] == [20.5, 21.0, 22.0]
    lines = rf.path.read_text().splitlines()
    rf.path.write_text("\n".join([lines[0], "not json", lines[2]]) + "\n")
    with pytest.raises(GSError, match="line 2 is not JSON"):
        rf.rows()


def test_torn_tail_longer_than_the_read_window_and_alone(tmp_path):
    rf = ResultsFile(tmp_path / "r")
    rf.path.write_text('{"key": "' + "x" * 200_000)  # only a torn line, longer than one 64 kB window
    rf.append(task(), {"psnr": 1.0})
    assert [r["psnr"] for r in rf.rows()] == [1.0]
    with open(rf.path, "a") as f:
        f.write('{"key": "' + "y" * 150_000)
    rf.append(task(restart=1), {"psnr": 2.0})
    assert [r["psnr"] for r in rf.rows()] == [1.0, 2.0]


def test_restart_tasks_are_the_restarts_of_recover():
    """Task restart r == restart r of recover(restarts=2) on the same measurements (seed + index)."""
    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.io.images import load_image
    from gs_onnx.physics import measure, paper_sigma
    from gs_onnx.physics import make_operator
    from gs_onnx.solve.restart import Budget, recover
    from gs_onnx.solve.stopping import PAPER

    clear_caches()
    rows = [run_task(task(restart=r, index=1, seed=5)) for r in range(2)]
    man = registry.load("dcgan")
    x = load_image(rows[0]["image"], 64)
    op = make_operator("gaussian", rows[0]["m"], man.n, 5)
    y = measure(x.reshape(1, -1), op, paper_sigma(man.n, rows[0]["m"]), 5 + 1)[0]
    rec = recover(CutGenerator(man, 1, "cpu"), op, y, restarts=2, seed=5 + 1, budget=Budget(max_iter=4, max_fun=5),
                  stop=PAPER)
    for r in range(2):
        assert rows[r]["cut"] == 1
        assert rows[r]["objective"] == pytest.approx(rec.restarts[r].objective, rel=1e-6)
        assert rows[r]["measurement_error"] == pytest.approx(rec.restarts[r].measurement_error, rel=1e-6)
    assert rows[0]["free_parameters"] == 512 * 4 * 4 and rows[0]["n"] == man.n
    for f in ("model", "cut", "seed", "operator", "budget", "seconds", "provider", "psnr", "m", "sigma"):
        assert f in rows[0]


def test_winner_is_lowest_measurement_error_not_psnr():
    base = {"preset": "cs", "model": "d", "variant": "", "method": "gs", "cut": 1, "init": "cn01", "dataset": "s",
            "operator": "gaussian", "ratio": 0.1, "n": 10, "free_parameters": 5}
    rows = [{**base, "index": 0, "restart": 0, "measurement_error": 2.0, "psnr": 30.0},
            {**base, "index": 0, "restart": 1, "measurement_error": 1.0, "psnr": 20.0},
            {**base, "index": 1, "restart": 0, "measurement_error": 1.0, "psnr": 24.0}]
    w = sorted(winners(rows), key=lambda r: r["index"])
    assert [r["psnr"] for r in w] == [20.0, 24.0]
    (c,) = cells(rows)
    assert c.mean == pytest.approx(22.0) and c.std == pytest.approx(2.0)
    assert "| 22.00 +- 2.00 | 2 | 0.500 |" in markdown(rows)


# ---------------------------------------------------------------------------------------- presets

def _check_summary(out: Path, rows: list[dict]) -> None:
    """summary.md's PSNR means equal the means of the per-image best restarts recomputed here."""
    text = (out / "summary.md").read_text()
    groups: dict[tuple, dict[int, tuple[float, float]]] = {}
    for r in rows:
        if r["method"] == "samples":
            continue
        k = (r["model"], r["variant"], r["method"], r["cut"], r["init"], r["dataset"], r["ratio"])
        cur = groups.setdefault(k, {}).get(r["index"])
        if cur is None or r["measurement_error"] < cur[0]:
            groups[k][r["index"]] = (r["measurement_error"], r["psnr"])
    for k, per in groups.items():
        assert f"{np.mean([p for _, p in per.values()]):.2f} +- {np.std([p for _, p in per.values()]):.2f}" in text, k


def test_cs_end_to_end_resume_and_plot(tmp_path):
    out = tmp_path / "cs"
    r = ok(run(["cs", *TINY, "--methods", "nogs,gs,lasso-dct", "--lasso-iter", "20"], out))
    rows = rows_of(out)
    # 2 images x (2 restarts nogs + 2 restarts gs + 1 lasso)
    assert len(rows) == 10 and {r["method"] for r in rows} == {"nogs", "gs", "lasso-dct"}
    assert {r["cut"] for r in rows if r["method"] == "nogs"} == {0}
    assert {r["cut"] for r in rows if r["method"] == "gs"} == {1}
    assert all(np.isfinite(r["psnr"]) and r["m"] == round(0.05 * 12288) for r in rows)
    _check_summary(out, rows)
    assert_png(out / "cs.png")
    # a rerun runs nothing; a lost row (interrupted run) is recomputed, and only it
    r = ok(run(["cs", *TINY, "--methods", "nogs,gs,lasso-dct", "--lasso-iter", "20", "--no-plot"], out))
    assert "0 task(s) ran" in r.output and len(rows_of(out)) == 10
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:7]) + "\n" + lines[7][:25])
    r = ok(run(["cs", *TINY, "--methods", "nogs,gs,lasso-dct", "--lasso-iter", "20", "--no-plot"], out))
    assert "3 task(s) ran" in r.output
    again = rows_of(out)
    assert sorted(x["key"] for x in again) == sorted(x["key"] for x in rows)
    old = {x["key"]: x["psnr"] for x in rows}
    for x in again:
        assert x["psnr"] == pytest.approx(old[x["key"]], abs=1e-6), "the same task gives the same result"
    # plot alone, elsewhere
    ok(CliRunner().invoke(ecli.main, ["plot", str(out), "-o", str(tmp_path / "figs")]))
    assert_png(tmp_path / "figs" / "cs.png")


def test_baselines_preset_records_free_parameters(tmp_path):
    out = tmp_path / "b"
    ok(run(["baselines", *TINY, "--images", "1", "--restarts", "1", "--steps", "3", "--finetune-steps", "2"], out))
    rows = rows_of(out)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"gs", "mganprior", "deep-decoder", "iagan"}
    assert by["gs"]["free_parameters"] == 8192
    assert by["mganprior"]["free_parameters"] == 10 * 100 + 10 * 512
    assert by["deep-decoder"]["free_parameters"] > 0 and by["iagan"]["free_parameters"] > 3_000_000
    assert "free / n" in (out / "summary.md").read_text()
    assert_png(out / "baselines.png")


def test_raw_preset_identity_no_noise_and_generated_images(tmp_path):
    out = tmp_path / "raw"
    ok(run(["raw", "--models", "dcgan", "--datasets", f"generated,{SAMPLES}", "--images", "1", "--restarts", "1",
            "--max-iter", "3", "--no-progress"], out))
    rows = rows_of(out)
    assert len(rows) == 4
    assert all(r["operator"] == "identity" and r["sigma"] == 0 and r["m"] == r["n"] for r in rows)
    assert {r["dataset"] for r in rows} == {"generated", "samples"}
    assert_png(out / "raw.png")


def test_raw_default_budget_is_the_papers():
    from gs_onnx.experiment.presets import Config, raw

    ts = raw(Config(models=("dcgan", "vae"), datasets=(str(SAMPLES),), images=1, restarts=1))
    assert {(t.model, t.max_iter) for t in ts} == {("dcgan", 2000), ("vae", 800)}


def test_untrained_preset(tmp_path, tiny_models):
    out = tmp_path / "u"
    twin = tiny_models["dcgan"][1]
    ok(run(["untrained", *TINY, "--images", "1", "--restarts", "1", "--untrained", twin], out))
    rows = rows_of(out)
    assert {r["variant"] for r in rows} == {"trained", "untrained"}
    assert_png(out / "untrained.png")
    r = run(["untrained", *TINY, "--untrained", "nope"], tmp_path / "u2")
    assert r.exit_code == 2 and "no untrained twin 'nope'" in r.stderr


def test_init_preset_with_lasso_warm_start(tmp_path):
    out = tmp_path / "i"
    ok(run(["init", *TINY, "--images", "1", "--restarts", "1", "--inits", "zero,cn01,lasso"], out))
    rows = rows_of(out)
    assert {r["init"] for r in rows} == {"zero", "cn01", "lasso"}
    assert_png(out / "init.png")


def test_cuts_preset_selects_a_cut(tmp_path):
    out = tmp_path / "c"
    ok(run(["cuts", *TINY, "--images", "1", "--restarts", "1", "--cuts", "0,1,2"], out))
    rows = rows_of(out)
    assert sorted({r["cut"] for r in rows}) == [0, 1, 2]
    text = (out / "summary.md").read_text()
    best = max(rows, key=lambda r: r["psnr"])
    assert f"| dcgan | samples | 0.05 | {best['cut']} | {best['psnr']:.2f} |" in text
    assert_png(out / "cuts.png")


def test_samples_preset_writes_grids(tmp_path):
    out = tmp_path / "s"
    ok(run(["samples", "--models", "dcgan", "--cuts", "0,1", "--count", "3", "--no-progress"], out))
    rows = rows_of(out)
    assert [r["cut"] for r in rows] == [0, 1]
    for r in rows:
        with Image.open(out / r["files"][0]) as im:
            assert im.size[0] > 3 * 64 and im.format == "PNG"
        assert "_files" not in r and 0 < r["pixel_std"] < 1
    assert_png(out / "samples_dcgan.png")


# ------------------------------------------------------------------------------------- execution

def test_local_pool_gives_the_same_rows(tmp_path):
    args = ["cs", *TINY, "--images", "1", "--methods", "gs,lasso-dct", "--lasso-iter", "10", "--no-plot"]
    ok(run(args, tmp_path / "one"))
    ok(run(args + ["--workers", "2"], tmp_path / "two"))
    a = {r["key"]: r["psnr"] for r in rows_of(tmp_path / "one")}
    b = {r["key"]: r["psnr"] for r in rows_of(tmp_path / "two")}
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=0.05)  # 1 vs all threads: float32 rounding only
    assert len({r["pid"] for r in rows_of(tmp_path / "two")}) >= 1


@pytest.mark.slow
def test_ray_local_instance_gives_the_same_rows(tmp_path):
    pytest.importorskip("ray")
    args = ["cs", *TINY, "--images", "1", "--restarts", "1", "--methods", "gs,lasso-dct", "--lasso-iter", "10",
            "--no-plot", "--threads", "1"]
    ok(run(args, tmp_path / "local"))
    r = ok(run(args + ["--ray", "local"], tmp_path / "ray"))
    assert "2 task(s) ran" in r.output
    a = {r["key"]: r for r in rows_of(tmp_path / "local")}
    b = {r["key"]: r for r in rows_of(tmp_path / "ray")}
    assert a.keys() == b.keys()
    for k in a:
        assert b[k]["psnr"] == pytest.approx(a[k]["psnr"], abs=1e-4)
        assert b[k]["pid"] != a[k]["pid"]  # ran in a Ray worker, not in the driver


@pytest.mark.parametrize("args, needle", [
    (["cs", "--models", "nope"], "unknown model 'nope'"),
    (["cs", "--models", "dcgan", "--datasets", "nowhere"], "unknown dataset 'nowhere'"),
    (["cs", "--models", "dcgan", "--datasets", str(SAMPLES), "--images", "99"], "fewer than --images 99"),
    (["cs", "--models", "dcgan", "--ratios", "0.5,x"], "not a comma-separated list of numbers"),
    (["cs", "--models", "dcgan", "--ratios", "1.5"], "outside (0, 1]"),
    (["cs", "--models", "dcgan", "--methods", "gs,magic"], "unknown method 'magic'"),
    (["cs", "--models", "dcgan", "--cut", "7"], "cut 7 out of range"),
    (["cs", "--models", "dcgan", "--workers", "0"], "--workers must be >= 1"),
    (["init", "--models", "dcgan", "--inits", "cn01,bogus"], "unknown init 'bogus'"),
    (["cs", "--bogus-flag"], "No such option"),
    (["plot", "/nonexistent/folder"], "no results in"),
])
def test_bad_input_is_one_line(tmp_path, args, needle):
    r = CliRunner().invoke(ecli.main, args + (["-o", str(tmp_path / "o")] if args[0] != "plot" else []))
    assert r.exit_code == 2, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not (tmp_path / "o" / "results.jsonl").exists()
