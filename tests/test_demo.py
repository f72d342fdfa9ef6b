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
