"""Hardening, round two (issue 27): each class of what a second hostile corpus got through, closed as a class,
with at least two variants per class. Every refusal is one ``error:`` line, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gs_onnx import cli

from test_bad_inputs import edit_manifest, model_copy, recover_with_model, refused, work  # noqa: F401 (fixtures)
from test_bad_inputs import meas  # noqa: F401
from test_cli import TINY


# ------------------------------------------------------------------ class 5: duplicated keys, NaN constants

def _inject(text: str, where: str, extra: str) -> str:
    """Insert ``extra`` (a ``"key": value,`` pair) right after the first ``where`` (an opening brace's text)."""
    i = text.index(where) + len(where)
    return text[:i] + extra + text[i:]


@pytest.mark.parametrize("edit, needle", [
    (lambda t: _inject(t, "{", '"output_range": [0, 255], '), "'output_range' appears twice"),
    (lambda t: _inject(t, '"recommended": {', '"cut": 0, '), "'cut' appears twice"),
    (lambda t: t.replace('"opset": 18', '"opset": NaN', 1), "NaN is not a JSON number"),
])
def test_a_manifest_with_a_duplicated_key_or_a_nan_is_refused(work, edit, needle):
    tmp, m = work
    model = model_copy(tmp)
    mf = model / "manifest.json"
    text = mf.read_text()
    assert '"opset": 18' in text
    edit_manifest(model, None, edit(text))
    recover_with_model(tmp, m, model, "unreadable manifest", needle)


@pytest.mark.parametrize("edit, needle", [
    (lambda t: _inject(t, "{", '"model": "began", '), "'model' appears twice"),
    (lambda t: _inject(t, '"operator": {', '"seed": 7, '), "'seed' appears twice"),
    (lambda t: _inject(t, "{", '"sigma": NaN, '), "NaN is not a JSON number"),
    (lambda t: _inject(t, "{", '"ratio": -Infinity, '), "-Infinity is not a JSON number"),
])
def test_a_sidecar_with_a_duplicated_key_or_a_nan_is_refused(work, edit, needle):
    """The first value of a duplicated key is what a reader checking by eye sees; Python's json keeps the last
    (whose checksum is right): both readings cannot be trusted, so the file is refused."""
    tmp, m = work
    side = m.with_suffix(".json")
    side.write_text(edit(side.read_text()))
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "unreadable sidecar", needle)


@pytest.mark.parametrize("line", ['{"key": "a", "psnr": 20.0, "psnr": 30.0}', '{"key": "a", "psnr": NaN}'])
def test_a_results_row_with_a_duplicated_key_or_a_nan_is_refused(tmp_path, line):
    from click.testing import CliRunner

    from gs_onnx.experiment import cli as ecli

    out = tmp_path / "exp"
    out.mkdir()
    (out / "results.jsonl").write_text(line + '\n{"key": "b"}\n')
    before = (out / "results.jsonl").read_bytes()
    r = CliRunner().invoke(ecli.main, ["samples", "--models", "dcgan", "--count", "2", "--cuts", "1", "-o", str(out),
                                       "--no-plot"])
    assert r.exit_code == 2 and "line 1" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert (out / "results.jsonl").read_bytes() == before
