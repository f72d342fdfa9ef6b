"""gs-demo end to end with a tiny budget: both PSNRs printed, the side-by-side PNG written."""
from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from gs_onnx.cli.demo import main


def test_demo_runs_and_writes_side_by_side(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["--model", "dcgan-digiface", "--restarts", "1", "--max-iter", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "cut 0" in r.output and "cut 1" in r.output and "PSNR" in r.output
    im = Image.open(out / "side_by_side.png")
    assert im.size[0] >= 3 * 128 and 128 < im.size[1] < 200  # three labelled 128 px tiles side by side, a caption
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["psnr"]) == {"cut0", "cut1"} and summary["restarts"] == 1 and summary["max_iter"] == 3
    assert summary["provenance"]["gs_onnx"] and summary["provenance"]["utc"].endswith("Z")


def test_demo_bad_budget_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["--model", "dcgan-digiface", "--max-iter", "0", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_demo_shows_the_default_method_where_it_is_not_plain_gs(tmp_path):
    """dcgan's default on Gaussian measurements is gs-pnp: a fourth panel, its PSNR printed and in demo.json, above
    both GS panels (3 GS iterations here, then PnP)."""
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["--model", "dcgan", "--restarts", "1", "--max-iter", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "default (gs-pnp" in r.output
    assert Image.open(out / "side_by_side.png").size[0] >= 4 * 64
    summary = json.loads((out / "demo.json").read_text())
    assert summary["default"]["method"] == "gs-pnp" and summary["default"]["psnr"] > max(summary["psnr"].values())
