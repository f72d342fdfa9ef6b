"""Every block's exported forward and VJP graph against torch autograd, for all three architectures."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from gs_export.architectures import DCGAN, build, dcgan_tutorial_key_map, fuse_batchnorm, upsample_nearest  # noqa: E402
from gs_export.exporter import FORBIDDEN_OPS  # noqa: E402

from conftest import TINY  # noqa: E402


def _session(path):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("key", list(TINY))
def test_blocks_match_torch_autograd(tiny_models, key):
    gen, folder = tiny_models[key]
    man = json.loads((folder / "manifest.json").read_text())
    shapes = gen.shapes()
    g = torch.Generator().manual_seed(123)
    for blk, spec in zip(gen.blocks, man["blocks"]):
        fs, vs = _session(folder / spec["forward"]["file"]), _session(folder / spec["vjp"]["file"])
        for batch in (1, 2, 5):
            for _ in range(3):
                xs = [torch.randn((batch, *shapes[n]), generator=g).requires_grad_(True) for n in blk.inputs]
                out = blk(*xs)
                out = out if isinstance(out, tuple) else (out,)
                # cotangents away from ReLU kinks (see exporter.check_block)
                cot = [torch.randn(o.shape, generator=g) * (o.detach().abs() > 1e-3 * o.detach().std()) for o in out]
                ref = torch.autograd.grad(out, xs, cot, allow_unused=True)
                feed = {n: x.detach().numpy() for n, x in zip(blk.inputs, xs)}
                fouts = fs.run(None, feed)
                assert [o.name for o in fs.get_outputs()] == spec["forward"]["outputs"]
                for got, want in zip(fouts, out):
                    assert got.shape == want.shape
                    assert _rel(got, want.detach().numpy()) < 1e-5
                # the VJP graph reads the forward graph's outputs (incl. saved values) and the cotangents
                env = {**feed, **dict(zip(spec["forward"]["outputs"], fouts)),
                       **{f"grad_{n}": c.numpy() for n, c in zip(blk.outputs, cot)}}
                vfeed = {i.name: env[i.name] for i in vs.get_inputs()}
                for got, want, x in zip(vs.run(None, vfeed), ref, xs):
                    want = torch.zeros_like(x) if want is None else want
                    assert got.shape == tuple(x.shape)
                    assert _rel(got, want.numpy()) < 1e-5


@pytest.mark.parametrize("key", list(TINY))
def test_vjp_graphs_do_not_recompute_the_forward(tiny_models, key):
    """The VJP graph of a block has no activation functions and exactly one convolution per forward
    convolution (the input gradient; none recomputes the forward). A stride-1 Conv's input gradient is a
    Conv with the flipped kernel (faster than ConvTranspose on ORT's CPU), a strided one a ConvTranspose;
    a ConvTranspose's is a Conv."""
    _, folder = tiny_models[key]
    man = json.loads((folder / "manifest.json").read_text())
    for spec in man["blocks"]:
        fwd_ops, vjp_ops = set(spec["check"]["ops"]["forward"]), set(spec["check"]["ops"]["vjp"])
        assert not vjp_ops & {"Relu", "LeakyRelu", "Elu", "Tanh", "Sigmoid", "Exp", "Gemm"}, spec["index"]
        fwd = onnx.load(str(folder / spec["forward"]["file"]), load_external_data=False).graph.node
        vjp = onnx.load(str(folder / spec["vjp"]["file"]), load_external_data=False).graph.node
        convs = [n for n in fwd if n.op_type in ("Conv", "ConvTranspose")]
        assert len([n for n in vjp if n.op_type in ("Conv", "ConvTranspose")]) == len(convs), spec["index"]
        for n in convs:
            strides = next((list(a.ints) for a in n.attribute if a.name == "strides"), [1, 1])
            if n.op_type == "Conv" and strides == [1, 1]:
                assert "ConvTranspose" not in vjp_ops, spec["index"]
        assert spec["forward"]["outputs"][: len(spec["outputs"])] == spec["outputs"]
        assert spec["forward"]["outputs"][len(spec["outputs"]):] == spec.get("saved", [])


@pytest.mark.parametrize("key", list(TINY))
def test_graphs_have_no_scatter_and_share_weights(tiny_models, key):
    _, folder = tiny_models[key]
    man = json.loads((folder / "manifest.json").read_text())
    assert man["opset"] >= 17
    for spec in man["blocks"]:
        locs = []
        for which in ("forward", "vjp"):
            m = onnx.load(str(folder / spec[which]["file"]), load_external_data=False)
            assert not {n.op_type for n in m.graph.node} & set(FORBIDDEN_OPS)
            # dynamic batch axis on every input
            for i in m.graph.input:
                assert i.type.tensor_type.shape.dim[0].dim_param
            locs += [e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"]
        assert set(locs) <= {spec["weights"]}
        # every VJP weight is stored once: the weights file holds no more than the forward graph's tensors
        fwd = onnx.load(str(folder / spec["forward"]["file"]), load_external_data=False)
        ext = [int(dict((e.key, e.value) for e in t.external_data)["length"])
               for t in fwd.graph.initializer if t.external_data]
        assert (folder / spec["weights"]).stat().st_size <= sum(ext) + 63 * len(ext)  # 64-byte alignment
        assert spec["check"]["vjp_rel_l2_err"] < 1e-5 and spec["check"]["forward_rel_l2_err"] < 1e-5


def test_began_cut_inputs_and_skip(tiny_models):
    gen, folder = tiny_models["began"]
    man = json.loads((folder / "manifest.json").read_text())
    cuts = {c["cut"]: c["inputs"] for c in man["cuts"]}
    assert cuts[0] == ["z"] and cuts[1] == ["h1"]
    for c in range(2, len(cuts)):
        assert cuts[c] == [f"h{c}", "h1"], "past the first layer the skip source is a second free input"
    _, folder2 = tiny_models["began_noskip_tanh"]
    man2 = json.loads((folder2 / "manifest.json").read_text())
    assert all(len(c["inputs"]) == 1 for c in man2["cuts"])
    assert man2["output_range"] == [-1.0, 1.0]


def test_paper_shapes():
    d = DCGAN()
    assert d.shapes()["h1"] == (512, 4, 4) and d.shapes()["x"] == (3, 64, 64)
    b = build("began")
    assert b.cut_inputs(2) == ["h2", "h1"]
    assert b.shapes()["h2"] == (128, 16, 16) and b.shapes()["h1"] == (128, 8, 8) and b.shapes()["x"] == (3, 128, 128)
    v = build("vae")
    assert v.shapes()["x"] == (3, 128, 128) and v.shapes()["z"] == (512,)


def test_fuse_batchnorm_is_exact():
    from conftest import _randomise_bn

    g = _randomise_bn(build("vae", nz=16, widths=[8, 8, 8, 8, 8, 8])).eval()
    import copy

    f = fuse_batchnorm(copy.deepcopy(g))
    z = torch.randn(3, 16)
    assert torch.allclose(g(z), f(z), atol=1e-5)


def test_upsample_is_nearest():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(upsample_nearest(x, 3), torch.nn.functional.interpolate(x, scale_factor=3, mode="nearest"))


def test_dcgan_tutorial_key_map_covers_state_dict():
    g = DCGAN()
    m = dcgan_tutorial_key_map(g)
    assert sorted(m.values()) == sorted(g.state_dict().keys())


def test_shipped_manifest_records_checks(shipped):
    for b in shipped.blocks:
        assert b.check["vjp_rel_l2_err"] < 1e-5 and b.check["forward_rel_l2_err"] < 1e-5
        assert b.check["batches"] == [1, 3] and b.check["repeats"] >= 3
    assert "MIT" in shipped.provenance["licence"]


@pytest.mark.slow
def test_upgrade_keeps_weights_and_gradients(tiny_models, tmp_path):
    """gs-export upgrade re-exports a model from its own graphs: same images, same gradients, provenance kept."""
    from click.testing import CliRunner

    from gs_export.cli import main as export_main
    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.generator.manifest import load_manifest

    src = tiny_models["began"][1]
    r = CliRunner().invoke(export_main, ["upgrade", str(src), "--out", str(tmp_path / "up")])
    assert r.exit_code == 0, (r.output, r.exception)
    old, new = load_manifest(src), load_manifest(tmp_path / "up")
    assert new.name == old.name and new.recommended == old.recommended and new.untrained == old.untrained
    assert new.provenance["upgraded_from"]["files"] == old.raw["files"]
    rng = np.random.default_rng(0)
    lat = {n: rng.standard_normal((2, *old.tensors[n])).astype(np.float32) for n in old.cut(2).inputs}
    a, b = CutGenerator(old, 2, "cpu"), CutGenerator(new, 2, "cpu")
    xa, ea = a.forward(lat, keep=True)
    xb, eb = b.forward(lat, keep=True)
    np.testing.assert_allclose(xb, xa, atol=1e-5)
    g = rng.standard_normal(xa.shape).astype(np.float32)
    for n, ga in a.vjp(ea, g).items():
        np.testing.assert_allclose(b.vjp(eb, g)[n], ga, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_export_into_a_folder_whose_parent_does_not_exist(tmp_path):
    """The exporter builds the model beside its destination (one filesystem) and creates missing parents."""
    import torch

    from gs_export.architectures import build
    from gs_export.exporter import export_generator
    from gs_onnx.generator.manifest import load_manifest

    torch.manual_seed(0)
    out = tmp_path / "a" / "b" / "tiny"
    export_generator(build("dcgan", ngf=8).eval(), out, "tiny", provenance={"weights": "random", "licence": "n/a"},
                     check_repeats=1)
    assert load_manifest(out).name == "tiny"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"], "no temp folder left behind"
