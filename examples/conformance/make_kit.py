"""Write the recovery-folder conformance kit (docs/recovery-graph.md, sections 12 and 13): valid folders a reader must
run, and invalid ones, each breaking one rule, a reader must refuse; DIR/kit.json says which.

    python examples/conformance/make_kit.py KIT
    python examples/conformance/check.py KIT          # the Python reader (gs_onnx)
    node examples/node/conformance.js KIT              # the Node reader

The valid folders are real recoveries (tiny budgets: 2 iterations); the invalid ones are copies of one valid folder
(its unchanged files hard-linked) with one thing changed, and where the change is to a file, its sha256 in
recovery.json updated to match: the rule, not the checksum, must catch it.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "gs_onnx" / "samples"
FACE64, FACE128 = SAMPLES / "celeba64_182638.jpg", SAMPLES / "celeba_aligned_00000.jpg"

#: name -> (model, face, gs-measure options, gs-export recovery options)
VALID = {
    "dcgan-gaussian-lbfgs-gs": ("dcgan", FACE64, ["--ratio", "0.02"], ["--method", "gs"]),
    "dcgan-mask-adam-gs": ("dcgan", FACE64, ["--operator", "mask", "--keep", "0.3"], ["--method", "gs", "--optimizer",
                                                                                      "adam"]),
    "dcgan-box-gs-pnp": ("dcgan", FACE64, ["--operator", "box"], ["--method", os.environ.get("KIT_PNP", "gs-pnp")]),
    "dcgan-downsample-gs-pnp": ("dcgan", FACE64, ["--operator", "downsample", "--factor", "4"],
                                ["--method", os.environ.get("KIT_PNP", "gs-pnp")]),
    "dcgan-gaussian-gs-pnp": ("dcgan", FACE64, ["--ratio", "0.02"], ["--method", os.environ.get("KIT_PNP", "gs-pnp")]),
    "dcgan-fourier-gs": ("dcgan", FACE64, ["--operator", "fourier", "--keep", "0.25"], ["--method", "gs"]),
    "dcgan-srdct-gs": ("dcgan", FACE64, ["--operator", "srdct", "--ratio", "0.05"], ["--method", "gs"]),
    "dcgan-identity-gs": ("dcgan", FACE64, ["--operator", "identity"], ["--method", "gs"]),
    "began-mask-gs": ("began", FACE128, ["--operator", "mask", "--keep", "0.3"], ["--method", "gs"]),
    "vae-blur-gs": ("vae", FACE128, ["--operator", "blur", "--sigma", "2"], ["--method", "gs"]),
    "dcgan-blur-gs-tv": ("dcgan", FACE64, ["--operator", "blur", "--sigma", "2"], ["--method", "gs-tv"]),
}
BASE = "dcgan-mask-adam-gs"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def npy_fortran(a) -> bytes:
    """``a`` as a .npy whose header says fortran_order True (its bytes in that order), whatever its shape."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(a.dtype), "fortran_order": True,
                                              "shape": a.shape})
    buf.write(np.asarray(a).T.tobytes(order="C"))
    return buf.getvalue()


def write_valid(kit: Path) -> None:
    from gs_onnx.cli.measure import measure_main
    from gs_onnx.cli.recovery import main as export_recovery

    for name, (model, face, meas, rec) in VALID.items():
        work = kit / ".work" / name
        work.mkdir(parents=True, exist_ok=True)
        measure_main.main([str(face), "--model", model, *meas, "-o", str(work / "m.npy"), "-q", "--overwrite"],
                          standalone_mode=False)
        export_recovery.main(["--measurements", str(work / "m.npy"), *rec, "--max-iter", "2", "--reference", str(face),
                              "-o", str(kit / "valid" / name), "--overwrite"], standalone_mode=False)


class Variant:
    """A copy of the base folder (files hard-linked until changed) under invalid/NAME."""

    def __init__(self, kit: Path, name: str, base: str = BASE):
        self.src, self.dir = kit / "valid" / base, kit / "invalid" / name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for p in self.src.rglob("*"):
            q = self.dir / p.relative_to(self.src)
            if p.is_dir():
                q.mkdir(parents=True, exist_ok=True)
            else:
                q.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, q)
        self.iface = json.loads((self.dir / "recovery.json").read_text())

    def put(self, rel: str, data: bytes, rehash: bool = True) -> None:
        """Write ``rel`` (never through the hard link to the base folder's file)."""
        p = self.dir / rel
        p.unlink(missing_ok=True)
        p.write_bytes(data)
        if rehash and rel in self.iface["files"]:
            self.iface["files"][rel] = sha(data)

    def array(self, name: str, a: np.ndarray) -> None:
        self.put(f"inputs/{name}.npy", npy(a))
        self.iface["inputs"][name].update(dtype=str(a.dtype), shape=list(a.shape))

    def load(self, name: str) -> np.ndarray:
        return np.load(self.dir / f"inputs/{name}.npy", allow_pickle=False)

    def save(self, text: str | None = None) -> None:
        p = self.dir / "recovery.json"
        p.unlink()
        p.write_text(text if text is not None else json.dumps(self.iface, indent=1))


def write_invalid(kit: Path) -> list[dict]:
    """Every invalid folder; returns the kit entries."""
    import onnx

    out = []

    def case(name: str, rule: int, why: str, change, base: str = BASE) -> None:
        v = Variant(kit, name, base)
        change(v)
        out.append({"folder": f"invalid/{name}", "expect": "refuse", "rule": rule, "why": why})

    def edit(**fields):
        def f(v):
            v.iface.update(fields)
            v.save()
        return f

    def graph_edit(fn):
        def f(v):
            m = onnx.load(str(v.dir / "recovery.onnx"))
            fn(m, v)
            v.put("recovery.onnx", m.SerializeToString())
            v.save()
        return f

    # rule 1: the interface file
    case("interface-too-large", 1, "recovery.json above 4 MB", lambda v: v.save(json.dumps(v.iface) + " " * (5 << 20)))
    case("interface-not-utf8", 1, "recovery.json not UTF-8", lambda v: v.put(
        "recovery.json", b"\xff\xfe" + json.dumps(v.iface).encode("utf-16-le"), rehash=False))
    case("interface-duplicate-key", 1, "a key twice", lambda v: v.save(json.dumps(v.iface)[:-1] + ', "m": 1}'))
    case("interface-nan", 1, "a NaN literal", lambda v: v.save(json.dumps(v.iface)[:-1] + ', "nan_here": NaN}'))
    case("interface-link-outside", 1, "recovery.json links outside", lambda v: (
        (v.dir / "recovery.json").unlink(), (kit / ".work" / "outside.json").write_text(json.dumps(v.iface)),
        (v.dir / "recovery.json").symlink_to(kit / ".work" / "outside.json")))
    # rule 2: what it is
    case("format-manifest", 2, "a model manifest's format", edit(format="gs-onnx-manifest"))
    case("format-version-2", 2, "an unknown format_version", edit(format_version=2))
    case("format-version-true", 2, "format_version true (a boolean is not the number 1)", edit(format_version=True))
    case("a-measurement-sidecar", 2, "a sidecar given as the interface", lambda v: v.save(
        (kit / ".work" / BASE / "m.json").read_text()))
    # rule 3: its fields
    case("model-sha-not-hex", 3, "model_sha256 not hex", edit(model_sha256="xyz"))
    case("n-not-chw", 3, "n disagrees with image_shape", lambda v: edit(n=v.iface["n"] + 1)(v))
    case("method-unknown", 3, "a method the graph cannot be", edit(method="gs-magic"))
    case("restarts-zero", 3, "plan.restarts 0", lambda v: (v.iface["plan"].update(restarts=0), v.save()))
    case("cut-negative", 3, "cut -1", edit(cut=-1))
    case("image-shape-two", 3, "image_shape of two numbers", edit(image_shape=[64, 64]))
    case("input-file-elsewhere", 3, "an input read from another file",
         lambda v: (v.iface["inputs"]["lr"].update(file="inputs/y.npy"), v.save()))
    case("input-name-path", 3, "an input named like a path", lambda v: (
        v.iface["inputs"].update({"../lr": v.iface["inputs"]["lr"]}), v.save()))
    case("sigma-not-number", 3, "sigma a string", edit(sigma="0.01"))
    case("source-sha-not-hex", 3, "source.sha256 not hex", lambda v: (v.iface["source"].update(sha256="xyz"), v.save()))
    case("resume-state-unknown", 3, "resume.state maps an input to an output the interface does not declare",
         lambda v: (v.iface["resume"]["state"].update({next(iter(v.iface["resume"]["state"])): "next_nothing"}),
                    v.save()))
    # rule 4: its files
    case("files-extra", 4, "files lists a file nothing reads", lambda v: (
        v.put("weights.bin", b"12345678"), v.iface["files"].update({"weights.bin": sha(b"12345678")}), v.save()))
    case("files-missing-entry", 4, "an input without a sha256", lambda v: (v.iface["files"].pop("inputs/lr.npy"),
                                                                           v.save()))
    case("files-bad-digest", 4, "a sha256 not hex", lambda v: (v.iface["files"].update({"inputs/lr.npy": "00"}),
                                                                v.save()))
    case("files-escape", 4, "files lists a path out of the folder", lambda v: (
        v.iface["files"].update({"../escape.npy": "0" * 64}), v.save()))
    # rule 5: every file
    case("input-altered", 5, "an input changed after hashing", lambda v: v.put("inputs/y.npy", npy(
        v.load("y") + 1), rehash=False))
    case("input-missing", 5, "an input file removed", lambda v: (v.dir / "inputs" / "lr.npy").unlink())
    case("input-link-outside", 5, "an input links out of the folder", lambda v: (
        shutil.copy(v.dir / "inputs" / "lr.npy", kit / ".work" / "lr.npy"), (v.dir / "inputs" / "lr.npy").unlink(),
        (v.dir / "inputs" / "lr.npy").symlink_to(kit / ".work" / "lr.npy")))
    case("input-pickled", 5, "a pickled (object) array, rehashed", lambda v: (
        v.put("inputs/lr.npy", npy(np.array([{"a": 1}], dtype=object))), v.save()))
    case("input-dtype", 5, "an input of another dtype than declared, rehashed", lambda v: (
        v.put("inputs/lr.npy", npy(np.asarray(v.load("lr"), np.float32))), v.save()))
    case("input-fortran-order", 5, "z0 stored in Fortran order, rehashed", lambda v: (
        v.put("inputs/z0.npy", npy_fortran(v.load("z0"))), v.save()))
    case("input-nan", 5, "NaN in y, rehashed", lambda v: (v.put("inputs/y.npy", npy(np.full_like(v.load("y"), np.nan))),
                                                        v.save()))
    case("graph-altered", 5, "the graph changed after hashing", lambda v: v.put(
        "recovery.onnx", (v.dir / "recovery.onnx").read_bytes()[:-4] + b"abcd", rehash=False))
    # rule 6: the graph
    def external(m, v):
        t = max(m.graph.initializer, key=lambda t: len(t.raw_data))
        (v.dir / "w.bin").write_bytes(t.raw_data)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "w.bin"
    case("graph-external-data", 6, "a weight in external data", graph_edit(external))
    case("graph-ir-11", 6, "IR version 11", graph_edit(lambda m, v: setattr(m, "ir_version", 11)))
    case("graph-opset-19", 6, "opset 19", graph_edit(lambda m, v: m.opset_import[0].__setattr__("version", 19)))
    case("graph-custom-domain", 6, "a custom operator domain", graph_edit(
        lambda m, v: m.opset_import.add().__setattr__("domain", "com.example")))
    case("graph-input-missing", 6, "an interface input the graph does not take", lambda v: (
        v.put("inputs/extra.npy", npy(np.zeros(1, np.float32))),
        v.iface["inputs"].update({"extra": {"file": "inputs/extra.npy", "dtype": "float32", "shape": [1],
                                            "meaning": "x"}}),
        v.iface["files"].update({"inputs/extra.npy": sha(npy(np.zeros(1, np.float32)))}), v.save()))
    # rule 7: the interface agrees with its files
    case("m-edited", 7, "m edited, the files not", lambda v: edit(m=v.iface["m"] - 1)(v))
    case("w-not-binary", 7, "w holds a 2", lambda v: (v.array("w", np.where(v.load("w") > 0, 2, 0).astype(np.float32)),
                                                    v.save()))
    case("w-all-held", 7, "every row held out", lambda v: (v.array("w", np.zeros_like(v.load("w"))), v.save()))
    case("operator-says-gaussian", 7, "a gaussian operator without A", lambda v: (
        v.iface["operator"].update(type="gaussian"), v.save()))
    case("operator-m-disagrees", 7, "operator.m edited, the interface's m not", lambda v: (
        v.iface["operator"].update(m=v.iface["m"] + 1), v.save()))
    case("operator-type-unknown", 7, "an operator type no reader knows", lambda v: (
        v.iface["operator"].update(type="magic"), v.save()))
    case("operator-tables-of-another-type", 7, "a mask folder's tables under a fourier operator", lambda v: (
        v.iface["operator"].update(type="fourier"), v.save()))
    case("restarts-not-rows", 7, "plan.restarts disagrees with z0", lambda v: (v.iface["plan"].update(restarts=3),
                                                                               v.save()))
    case("prior-width", 7, "prior_mean narrower than z0", lambda v: (v.array("prior_mean", v.load("prior_mean")[:-1]),
                                                                   v.save()))
    # rule 8: the numbers
    case("lr-negative", 8, "lr < 0", lambda v: (v.array("lr", np.asarray(-1.0)), v.save()))
    case("beta-one", 8, "beta1 = 1", lambda v: (v.array("beta1", np.asarray(1.0)), v.save()))
    case("budget-huge", 8, "max_iterations 10^9", lambda v: (v.array("max_iterations", np.asarray(10 ** 9)), v.save()))
    case("chunk-above-budget", 8, "chunk above the budget", lambda v: (v.array("chunk", np.asarray(
        int(v.load("max_iterations")) + 1)), v.save()))
    case("start-not-zero", 8, "start 5", lambda v: (v.array("start", np.asarray(5)), v.save()))
    case("patience-negative", 8, "patience -1", lambda v: (v.array("patience", np.asarray(-1)), v.save()))
    case("tv-max-iter-huge", 8, "gs-tv: tv_max_iter 10^9", lambda v: (v.array("tv_max_iter", np.asarray(10 ** 9)),
                                                                     v.save()), base="dcgan-blur-gs-tv")
    case("tv-lam-negative", 8, "gs-tv: tv_lam < 0", lambda v: (v.array("tv_lam", np.asarray(-0.1)), v.save()),
         base="dcgan-blur-gs-tv")
    case("pnp-denoiser-unknown", 8, "gs-pnp: a row's denoiser beyond plan.pnp.classical", lambda v: (
        v.array("pnp_denoiser", v.load("pnp_denoiser") + 5), v.save()), base="dcgan-gaussian-gs-pnp")
    case("tv-plan-missing", 3, "a gs-tv folder without plan.tv", lambda v: (v.iface["plan"].pop("tv"), v.save()),
         base="dcgan-blur-gs-tv")
    # rule 10: the reference
    case("reference-out-of-range", 10, "reference.npy above 1", lambda v: (
        v.put("reference.npy", npy(np.load(v.dir / "reference.npy") + 2)), v.save()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kit", type=Path)
    a = ap.parse_args(argv)
    kit = a.kit
    kit.mkdir(parents=True, exist_ok=True)
    write_valid(kit)
    entries = [{"folder": f"valid/{name}", "expect": "run", "model": VALID[name][0]} for name in VALID]
    entries += write_invalid(kit)
    (kit / "kit.json").write_text(json.dumps({"format": "gs-onnx-conformance-kit", "rules": "docs/recovery-graph.md, "
                                              "section 12", "folders": entries}, indent=1) + "\n")
    n_bad = sum(e["expect"] == "refuse" for e in entries)
    print(f"wrote {kit}: {len(entries) - n_bad} valid and {n_bad} invalid folders, kit.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
