"""Hardening, round two (issue 27): each class of what a second hostile corpus got through, closed as a class,
with at least two variants per class. Every refusal is one ``error:`` line, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    (lambda t: t.replace('"opset": 18', '"opset": NaN', 1), "opset is NaN or Infinity"),
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
    (lambda t: t.replace('"sigma": ', '"sigma": NaN, "was_sigma": ', 1), "sigma is NaN or Infinity"),
    (lambda t: _inject(t, '"operator": {', '"scale": -Infinity, '), "operator.scale is NaN or Infinity"),
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

    from gs_onnx.cli import experiment as ecli

    out = tmp_path / "exp"
    out.mkdir()
    (out / "results.jsonl").write_text(line + '\n{"key": "b"}\n')
    before = (out / "results.jsonl").read_bytes()
    r = CliRunner().invoke(ecli.main, ["samples", "--models", "dcgan", "--count", "2", "--cuts", "1", "-o", str(out),
                                       "--no-plot"])
    assert r.exit_code == 2 and "line 1" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert (out / "results.jsonl").read_bytes() == before


# ------------------------------------------------------------------------- class 8: EXIF orientation

def _tagged(src: Path, dst: Path, turn: int, mode: str = "RGB", size: int | None = None) -> None:
    """``src`` stored as a camera would for EXIF orientation ``turn``: the pixels turned away from upright by
    the inverse of what the tag says, and the tag set (so that a viewer shows it upright)."""
    from PIL import Image, ImageOps

    up = Image.open(src).convert("RGB")
    if size:
        up = up.resize(size)
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_270}[turn]
    stored = up.transpose(inverse)
    if mode != "RGB":
        stored = stored.convert(mode)
    exif = Image.Exif()
    exif[0x0112] = turn
    stored.save(dst, exif=exif)
    # Pillow's own reading of the tag is the independent truth: it must give the upright pixels back
    assert dst.suffix != ".png" or np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(dst)).convert(mode).convert("RGB")),
                          np.asarray(up.convert(mode).convert("RGB")))


@pytest.mark.parametrize("turn, mode, ext", [(t, "RGB", ".png") for t in range(2, 9)] +
                         [(6, "L", ".png"), (8, "I;16", ".png"), (6, "RGB", ".jpg"), (3, "RGB", ".jpg")])
def test_an_image_with_an_exif_orientation_is_loaded_upright(tmp_path, turn, mode, ext):
    from gs_onnx.io.images import load_image
    from test_cli import IMG_A

    upright = tmp_path / "up.png"
    from PIL import Image
    Image.open(IMG_A).convert(mode if mode != "I;16" else "L").save(upright)
    tagged = tmp_path / f"tagged{ext}"
    _tagged(upright, tagged, turn, mode if mode != "I;16" else "L")
    if mode == "I;16":  # a 16-bit grayscale PNG, decoded by the float path
        g = Image.open(tagged)
        wide = Image.fromarray(np.asarray(g, np.uint16) * 257)
        exif = Image.Exif()
        exif[0x0112] = turn
        wide.save(tagged, exif=exif)
        assert Image.open(tagged).mode.startswith("I")
    a, b = load_image(upright, 64), load_image(tagged, 64)
    assert np.abs(a - b).mean() < (0.02 if ext == ".jpg" else 1e-5)


def test_a_rotated_celeba_aligned_image_keeps_its_aligned_crop_and_the_sidecar_says_so(tmp_path):
    """A 178 x 218 aligned face stored sideways (218 x 178 pixels, orientation 6) is cropped as an aligned face,
    like the upright file, and gs-measure records the orientation it applied."""
    from gs_onnx.io.images import load_image
    from gs_onnx.samples import __path__ as samples  # noqa: F401
    from test_cli import invoke

    src = Path(cli.__file__).resolve().parents[1] / "samples" / "celeba_aligned_00000.jpg"
    up = tmp_path / "up.png"
    from PIL import Image
    Image.open(src).save(up)
    assert Image.open(up).size == (178, 218)
    tagged = tmp_path / "sideways.png"
    _tagged(up, tagged, 6)
    assert Image.open(tagged).size == (218, 178)
    np.testing.assert_allclose(load_image(tagged, 128), load_image(up, 128), atol=1e-6)
    r = invoke(cli.measure_main, [tagged, "--model", "began", "--ratio", "0.01", "-o", tmp_path / "m.npy", "-q"])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["sources"][0]["exif_orientation"] == 6 and side["preprocessing"]["orientation"] == "EXIF applied"


# ------------------------------------------------------------- class 4: sizes from files, bounded from above

@pytest.mark.parametrize("edit, needle", [
    (lambda raw: raw["recommended"]["optimizer"].__setitem__("history", 1_000_000_000), "history"),
    (lambda raw: raw["recommended"]["optimizer"].__setitem__("restarts", 10 ** 6), "restarts"),
    (lambda raw: raw["recommended"].__setitem__("stopping", {"rule": "fixed", "max_iter": 10 ** 12}), "max_iter"),
])
def test_recommended_counts_are_bounded_from_above(work, edit, needle):
    tmp, m = work
    model = model_copy(tmp)
    edit_manifest(model, edit)
    recover_with_model(tmp, m, model, needle, "is above")


@pytest.mark.parametrize("args, needle", [
    (["--restarts", "100000", "--batch", "restarts"], "--restarts 100000 is above 1000"),
    (["--restarts", "600", "--batch", "restarts", "--max-iter", "1"], None),   # 600 threads: allowed
    (["--restarts", "200", "--batch-size", "8", "--batch", "images", "--max-iter", "1"], "400 L-BFGS-B runs"),
    (["--max-iter", "10000000"], "--max-iter 10000000 is above"),
])
def test_restarts_and_batches_are_bounded(work, args, needle):
    tmp, m = work
    if needle is None:  # the bound is not below what a machine can do
        from test_cli import invoke

        r = invoke(cli.recover_main, [m, "--method", "gs", *args, "-o", tmp / "ok", "-q"])
        assert r.exit_code == 0, r.output
        return
    if "400" in needle:  # two images x 200 restarts side by side: 400 runs, above a lower bound set here
        import gs_onnx.solve.restart as rs

        old, rs.MAX_LOCKSTEP_RUNS = rs.MAX_LOCKSTEP_RUNS, 300
        try:
            refused(tmp, cli.recover_main, [m, "--method", "gs", *args, "-o", tmp / "o"], needle, "above 300")
        finally:
            rs.MAX_LOCKSTEP_RUNS = old
        return
    refused(tmp, cli.recover_main, [m, "--method", "gs", *args, "-o", tmp / "o"], needle)


def test_a_file_no_block_uses_is_refused_before_it_is_read(work):
    """A huge (sparse) file listed in ``files`` but read by no block would be hashed for minutes: refused."""
    tmp, m = work
    model = model_copy(tmp)
    big = model / "unused.bin"
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB, sparse: nothing is written
    edit_manifest(model, lambda raw: raw["files"].__setitem__("unused.bin", "0" * 64))
    recover_with_model(tmp, m, model, "unused.bin", "no block uses")


def test_an_oversized_block_file_is_refused_before_it_is_hashed(work, monkeypatch):
    import gs_onnx.generator.manifest as mf

    tmp, m = work
    model = model_copy(tmp)
    monkeypatch.setattr(mf, "MAX_MODEL_FILE_BYTES", 1 << 20)  # the shipped weights are larger than 1 MiB
    recover_with_model(tmp, m, model, "bytes, above")


def test_fifos_are_refused_not_read(work):
    """A FIFO given as an image, a reference, measurements or a model file would block forever: each is named."""
    import os

    tmp, m = work
    fifo = tmp / "face.png"
    os.mkfifo(fifo)
    refused(tmp, cli.measure_main, [fifo, "--model", "dcgan", "--ratio", "0.1", "-o", tmp / "x.npy"], "is a FIFO")
    refused(tmp, cli.recover_main, [m, "--reference", fifo, "--reference", fifo, "-o", tmp / "o", *TINY], "is a FIFO")
    npy = tmp / "fifo.npy"
    os.mkfifo(npy)
    refused(tmp, cli.recover_main, [npy, "-o", tmp / "o", *TINY], "is a FIFO")
    model = model_copy(tmp)
    w = next(model.glob("block0.weights.bin"))
    w.unlink()
    os.mkfifo(w)
    recover_with_model(tmp, m, model, "is a FIFO")


def _with_function_loop(model: Path) -> None:
    """The last block's forward graph with a model-local function whose body holds a Loop (a subgraph), called by a
    node appended to the graph; its checksum rewritten as an attacker would."""
    import onnx
    from onnx import helper

    from test_bad_inputs import resum

    g = max(model.glob("block*.fwd.onnx"), key=lambda p: int(p.name.split(".")[0][5:]))  # the last: every cut runs it
    m = onnx.load(str(g), load_external_data=False)
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                             [helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
                              helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("c_out", onnx.TensorProto.BOOL, [])])
    loop = helper.make_node("Loop", ["n", "cond"], [], body=body)
    fn = helper.make_function("evil", "spin", ["n", "cond"], [], [loop], [helper.make_opsetid("", 18)])
    m.functions.append(fn)
    m.graph.node.append(helper.make_node("spin", ["n", "cond"], [], domain="evil"))
    g.write_bytes(m.SerializeToString())
    resum(model)


def test_a_loop_hidden_in_a_function_body_is_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    _with_function_loop(model)
    recover_with_model(tmp, m, model, "subgraphs (Loop in function spin)")


# ------------------------------------------- class 6: foreign exceptions (types validated at the boundary)

@pytest.mark.parametrize("row, needle", [
    ({"key": "a", "preset": "cs", "model": "dcgan", "method": "gs", "psnr": "30.1"}, "psnr must be a number"),
    ({"key": "a", "preset": "cs", "model": "dcgan", "method": "gs", "psnr": True}, "psnr must be a number"),
    ({"key": "a", "preset": "cs", "model": ["dcgan"], "method": "gs", "psnr": 30.1}, "model must be a string"),
    ({"key": "a", "preset": "budget", "trace": {"psnr": [20.0, "x"]}}, "trace must map names to lists of numbers"),
])
def test_a_results_row_of_the_wrong_types_is_one_line(tmp_path, row, needle):
    from click.testing import CliRunner

    from gs_onnx.cli import experiment as ecli

    out = tmp_path / "exp"
    out.mkdir()
    (out / "results.jsonl").write_text(json.dumps(row) + "\n")
    r = CliRunner().invoke(ecli.main, ["plot", str(out)])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, (r.stderr, r.exception)
    assert "line 1" in r.stderr and needle in r.stderr, r.stderr


@pytest.mark.parametrize("value", [["a", "b"], {"x": 1}, [1.0, None], []])
def test_a_fingerprint_of_the_wrong_types_is_one_line(work, value):
    from test_bad_inputs import edited

    tmp, m = work
    edited(m, lambda s: s.__setitem__("operator_fingerprint", value))
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "operator_fingerprint")


# --------------------------------------------------- class 9: every setting that changes a result is its own

def _cs(out, *extra):
    from click.testing import CliRunner

    from gs_onnx.cli import experiment as ecli
    from test_cli import IMG_A

    return CliRunner().invoke(ecli.main, ["cs", "--models", "dcgan", "--datasets", str(Path(IMG_A).parent),
                                          "--images", "1", "--ratios", "0.05", "--methods", "gs", "--no-progress",
                                          "--no-plot", "-o", str(out), *map(str, extra)])


def test_rerunning_with_another_budget_keeps_both_apart(tmp_path):
    out = tmp_path / "exp"
    for it in (3, 6):
        r = _cs(out, "--max-iter", it)
        assert r.exit_code == 0, r.output
    from gs_onnx.experiment.report import markdown
    from gs_onnx.experiment.results import ResultsFile

    text = markdown(ResultsFile(out).rows())
    assert "auto: 1 x 3" in text and "auto: 1 x 6" in text


def test_another_model_of_the_same_name_is_refused_in_an_existing_folder(tmp_path):
    """A --models-dir holding another 'dcgan' (here the shipped one with an edited recommended note: another
    manifest) must not be taken as the model the folder's rows were made with."""
    import shutil

    from gs_onnx.generator.registry import load

    out = tmp_path / "exp"
    assert _cs(out, "--max-iter", 3).exit_code == 0
    other = tmp_path / "models" / "dcgan"
    shutil.copytree(load("dcgan").root, other)
    d = json.loads((other / "manifest.json").read_text())
    d["recommended"]["note"] = "another export"
    (other / "manifest.json").write_text(json.dumps(d))
    before = (out / "results.jsonl").read_bytes()
    r = _cs(out, "--max-iter", 4, "--models-dir", tmp_path / "models")
    assert r.exit_code == 2 and "another model named dcgan" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert (out / "results.jsonl").read_bytes() == before


def test_another_image_under_the_same_index_is_refused_and_never_pooled(tmp_path):
    import shutil

    from test_cli import IMG_A

    out = tmp_path / "exp"
    assert _cs(out, "--max-iter", 3).exit_code == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert rows[0]["model_sha256"] and rows[0]["image"]
    # a run over another folder of the same label: the rows would pool two different faces as image 0
    moved = tmp_path / Path(IMG_A).parent.name
    moved.mkdir()
    for p in sorted(Path(IMG_A).parent.glob("*.jpg"))[1:]:
        shutil.copy(p, moved / p.name)
    from click.testing import CliRunner

    from gs_onnx.cli import experiment as ecli
    r = CliRunner().invoke(ecli.main, ["cs", "--models", "dcgan", "--datasets", str(moved), "--images", "1",
                                       "--ratios", "0.05", "--methods", "gs", "--no-progress", "--no-plot",
                                       "--max-iter", "3", "-o", str(out)])
    assert r.exit_code == 2 and "another image" in r.stderr, r.stderr
    # rows written before this check existed: the summary refuses to pool them
    forged = dict(rows[0], image="/elsewhere/face.jpg", key=rows[0]["key"] + "x", measurement_error=0.0)
    (out / "results.jsonl").write_text("\n".join(json.dumps(x) for x in rows + [forged]) + "\n")
    r = CliRunner().invoke(ecli.main, ["plot", str(out)])
    assert r.exit_code == 2 and "pooled" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


# -------------------------------- class 1: a sidecar cannot vouch for itself; the residual is checked instead

def _forge(meas: Path, out: Path, **operator) -> Path:
    """A copy of ``meas`` whose sidecar describes another operator, with meta_sha256 and operator_fingerprint
    recomputed through the public API (what anyone can do)."""
    import shutil

    from gs_onnx.io.measurement import meta_checksum
    from gs_onnx.physics import operator_for

    side = json.loads(meas.with_suffix(".json").read_text())
    side["operator"].update(operator)
    if "seed" in operator:
        side["seed"] = operator["seed"]
    side.pop("operator_fingerprint")
    side["operator_fingerprint"] = operator_for(side).fingerprint()
    side["meta_sha256"] = meta_checksum(side)
    shutil.copy(meas, out)
    out.with_suffix(".json").write_text(json.dumps(side))
    return out


@pytest.mark.parametrize("strip", ["version1", "no_fingerprint"])
def test_no_downgrade_path_around_the_sidecar_checksums(work, strip):
    from gs_onnx.io.measurement import meta_checksum
    from test_bad_inputs import edited
    from test_cli import invoke

    tmp, m = work
    if strip == "version1":  # an old sidecar: neither checksum
        edited(m, lambda s: (s.pop("meta_sha256"), s.pop("operator_fingerprint"), s.update(format_version=1)),
               resum_side=False)
        needle = "meta_sha256 is missing (format_version 1)"
    else:  # a current one with the fingerprint removed and its own checksum recomputed
        edited(m, lambda s: s.pop("operator_fingerprint"))
        assert meta_checksum(json.loads(m.with_suffix(".json").read_text()))
        needle = "operator_fingerprint is missing"
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], needle, "--trust-sidecar")
    r = invoke(cli.recover_main, [m, "--trust-sidecar", "-o", tmp / "trusted", *TINY, "-q"])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def dcgan_cs(tmp_path_factory):
    from test_cli import IMG_A, invoke

    d = tmp_path_factory.mktemp("fit")
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.1", "-o", d / "cs.npy", "-q"])
    assert r.exit_code == 0, r.output
    return d / "cs.npy"


@pytest.mark.parametrize("operator", [{"seed": 7}, {"type": "srdct"}])
def test_a_forged_operator_is_caught_by_the_residual(tmp_path, dcgan_cs, operator):
    """Both checksums recomputed for another seed's or another type's operator: the files check out, the
    recovery cannot explain the measurements: more than half of ||y|| is left unexplained (the right operator:
    a few %), judged from the measurements alone, so gs-recover exits 2 in one line, with or without --strict,
    the results written for inspection and fit.verdict "mismatch" in the report; a run shortened by --max-iter
    only warns (a few iterations explain little of anything), unless --strict."""
    from test_cli import invoke

    forged = _forge(dcgan_cs, tmp_path / "forged.npy", **operator)
    for extra, out in (([], "a"), (["--max-iter", "30", "--strict"], "b"), (["--max-iter", "30"], "c")):
        r = invoke(cli.recover_main, [forged, "--method", "gs", "--restarts", "1", *extra, "-o", tmp_path / out])
        if out == "c":
            assert r.exit_code == 0 and "warning: 1 of 1 image(s) leave" in r.stderr, r.output
        else:
            assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, r.output
            assert r.stderr.startswith("error: 1 of 1 image(s) leave") and "not made by the operator" in r.stderr
        row = json.loads((tmp_path / out / "report.json").read_text())["images"][0]
        assert row["fit"]["verdict"] == "mismatch" and row["fit"]["relative"] > 0.5 and row["fit"]["ratio"] > 10


def test_the_right_operator_fits_and_strict_passes(tmp_path, dcgan_cs):
    from test_cli import invoke

    # gs-tv fits to the noise; gs-pnp (the Gaussian default) does not: its residual is 4-7 times the paper's small
    # noise on the right operator (the denoiser's bias; docs/results.md), so --strict is checked on gs-tv
    r = invoke(cli.recover_main, [dcgan_cs, "--method", "gs-tv", "--strict", "-o", tmp_path / "ok"])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    row = json.loads((tmp_path / "ok" / "report.json").read_text())["images"][0]
    assert row["fit"]["verdict"] == "fits" and row["fit"]["ratio"] < 3 and row["fit"]["relative"] < 0.1


# ------------------------------------------------------ class 2: paths that come from files stay confined

@pytest.mark.parametrize("named", ["ABS", "../models/dcgan-digiface", "dcgan-digiface/.."])
def test_a_sidecar_may_name_a_model_not_a_folder(work, named):
    from test_bad_inputs import edited
    from test_cli import invoke

    tmp, m = work
    model = model_copy(tmp)
    edited(m, lambda s: s.__setitem__("model", str(model) if named == "ABS" else named))
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "a sidecar may name a model, not a folder")
    r = invoke(cli.recover_main, [m, "--model", model, "-o", tmp / "chosen", *TINY, "-q"])   # the user's choice
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("files", [["/etc/hostname"], ["../../outside.png"], ["C:/x.png"]])
def test_a_results_row_cannot_point_plot_outside_its_folder(tmp_path, files):
    from click.testing import CliRunner

    from gs_onnx.cli import experiment as ecli

    out = tmp_path / "exp"
    out.mkdir()
    row = {"key": "a", "preset": "samples", "model": "dcgan", "method": "samples", "cut": 1, "files": files}
    (out / "results.jsonl").write_text(json.dumps(row) + "\n")
    r = CliRunner().invoke(ecli.main, ["plot", str(out)])
    assert r.exit_code == 2 and "files must be a list of paths relative" in r.stderr, r.stderr


@pytest.mark.parametrize("which", ["results.jsonl", "results.jsonl.lock"])
def test_results_and_lock_files_that_are_links_are_not_written_through(tmp_path, which):
    out = tmp_path / "exp"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (out / which).symlink_to(victim)
    r = _cs(out, "--max-iter", 2)
    assert r.exit_code == 2 and "symbolic link" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert victim.read_text() == "keep me\n"


# ------------------------------------------------------------- class 3: who owns an output, and what it holds

@pytest.mark.parametrize("tail, kept", [('{"key": "half\n', 2), ('{"key": "half\n\n\n', 2),
                                        ('{"key": "whole", "psnr": 3.0}', 3)])
def test_a_torn_or_unterminated_tail_is_repaired_as_the_reader_reads_it(tmp_path, tail, kept):
    """A torn last line followed by a newline was read as torn but appended after, which made it a middle line
    and refused every later run; a complete last row without its newline was cut although the reader kept it."""
    from gs_onnx.experiment.results import ResultsFile
    from test_experiment import task

    rf = ResultsFile(tmp_path / "r")
    rf.append(task(restart=0), {"psnr": 1.0})
    rf.append(task(restart=1), {"psnr": 2.0})
    with open(rf.path, "a") as f:
        f.write(tail)
    assert len(rf.rows()) == kept
    rf.append(task(restart=2), {"psnr": 9.0})
    rows = rf.rows()                      # and every later read works
    assert len(rows) == kept + 1 and rows[-1]["psnr"] == 9.0
    rf.append(task(restart=3), {"psnr": 10.0})
    assert len(rf.rows()) == kept + 2


def test_two_runs_on_one_new_output_folder_the_second_is_refused(work):
    """The first run claims the output until it publishes; a second one on the same -o is refused at once
    (both used to pass the emptiness check and one silently replaced the other)."""
    from gs_onnx.io.publish import discard, staging

    tmp, m = work
    out = tmp / "shared-out"
    held = staging(out)                   # a run in progress
    try:
        from test_cli import invoke
        r = invoke(cli.recover_main, [m, "-o", out, *TINY])
        assert r.exit_code == 2 and "another run is writing to" in r.stderr, r.stderr
        r = invoke(cli.recover_main, [m, "-o", out, "--overwrite", *TINY])   # --overwrite does not take it either
        assert r.exit_code == 2 and "another run is writing to" in r.stderr, r.stderr
    finally:
        discard(held)
    from test_cli import invoke
    r = invoke(cli.recover_main, [m, "-o", out, *TINY, "-q"])
    assert r.exit_code == 0, r.output
    assert not list(tmp.glob(".gs-claim.*")) and not list(tmp.glob(".gs-staging.*"))   # nothing left behind


@pytest.mark.parametrize("where", ["parent", "itself"])
def test_an_output_folder_that_holds_an_input_is_refused(work, where):
    tmp, m = work
    out = m.parent if where == "parent" else m.parent / "sub"
    if where == "itself":  # the measurements inside the output folder named
        import shutil

        out.mkdir()
        shutil.copy(m, out / m.name)
        shutil.copy(m.with_suffix(".json"), out / m.with_suffix(".json").name)
        m = out / m.name
    refused(tmp, cli.recover_main, [m, "-o", out, "--overwrite", *TINY], "holds the input")
    assert m.is_file() and m.with_suffix(".json").is_file()


def test_measuring_fewer_images_over_an_earlier_run_removes_its_extra_previews(tmp_path):
    from test_cli import IMG_A, IMG_B, invoke

    out = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, IMG_B, "--model", "dcgan", "--operator", "mask", "--keep", "0.3", "-o", out,
                                  "-q"])
    assert r.exit_code == 0 and (tmp_path / "m_002.png").is_file(), r.output
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "mask", "--keep", "0.3", "-o", out,
                                  "--overwrite", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m_001.png").is_file() and not (tmp_path / "m_002.png").exists()
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.1", "-o", out, "--overwrite", "-q"])
    assert r.exit_code == 0 and not list(tmp_path.glob("m_*.png"))       # Gaussian: no preview at all


# --------------------------------------------------------------- class 7: Ctrl-C in a large lockstep batch

def _many(tmp: Path, count: int) -> Path:
    import numpy as np

    from gs_onnx.io.images import load_image
    from gs_onnx.io.measurement import write_measurements
    from gs_onnx.physics import GaussianOperator, measure, paper_sigma, sidecar_fields
    from test_cli import IMG_A

    op = GaussianOperator(m=2000, n=12288, seed=0)
    x = np.repeat(load_image(IMG_A, 64).reshape(1, -1), count, axis=0)
    s = paper_sigma(12288, 2000)
    path = tmp / "many.npy"
    write_measurements(path, measure(x, op, s, 0), {**sidecar_fields(op), "seed": 0, "image_shape": [3, 64, 64],
                                                     "model": "dcgan", "noise": "paper", "sigma": s})
    return path


@pytest.mark.parametrize("batch", [["--batch", "images", "--batch-size", "8"],
                                   ["--batch", "restarts", "--restarts", "3"]])
def test_ctrl_c_in_a_lockstep_batch_stops_at_once_and_publishes(tmp_path, batch):
    """SIGINT while L-BFGS-B runs sit in their threads: the runs end at their next evaluation, the finished
    images are published with a report saying how many, exit 130 (it used to abort: a thread left inside
    ONNX Runtime when the interpreter exits)."""
    import signal
    import subprocess
    import sys
    import time

    meas = _many(tmp_path, 40)
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "gs-recover"
    # a terminal's Ctrl-C: SIGINT not ignored in the child, even where this test runs in the background (a
    # non-interactive shell's `cmd &` starts it with SIGINT ignored, and Python then never raises KeyboardInterrupt)
    p = subprocess.Popen([str(exe), str(meas), "--method", "gs", "--max-iter", "60",
                          *batch, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not list(tmp_path.glob(".gs-staging.*/recovered_001.png")):  # the first image is finished
        assert p.poll() is None and time.time() - t0 < 120, "no image finished"
        time.sleep(0.2)
    time.sleep(0.5)                                                   # into the next batch
    p.send_signal(signal.SIGINT)
    t1 = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and time.time() - t1 < 5, (p.returncode, err)
    assert "terminate called" not in err and "Traceback" not in err, err
    rep = json.loads((out / "report.json").read_text())
    assert 1 <= len(rep["images"]) < 40 and rep["interrupted"].endswith("of 40 images finished")


def test_ctrl_c_ends_every_lockstep_thread_before_it_propagates():
    """The deterministic core of the above: SIGINT arrives while a batch is being evaluated (as inside ONNX
    Runtime); when KeyboardInterrupt leaves minimize_lockstep, no optimiser thread is left running."""
    import os
    import signal
    import threading
    import time

    import numpy as np

    from gs_onnx.solve.restart import Budget, minimize_lockstep

    calls = []

    def evaluate(keys, Z):
        calls.append(len(keys))
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)   # delivered to the main thread, which waits in join
            time.sleep(0.3)                       # this thread is "inside the kernel" meanwhile
        return (Z ** 2).sum(axis=1), 2 * Z

    before = set(threading.enumerate())
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if run in the background
    try:
        with pytest.raises(KeyboardInterrupt):
            minimize_lockstep(evaluate, [np.full(5, 1.0 + k) for k in range(6)], Budget(max_iter=1000, max_fun=1000,
                                                                                        gtol=0, ftol=0))
    finally:
        signal.signal(signal.SIGINT, previous)
    # the threads this call started (threads of earlier tests may end meanwhile: compare sets, not counts)
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not left, f"optimiser threads still running after Ctrl-C: {left}"
