"""Run a recovery folder written by ``gs-export recovery`` with nothing but numpy and onnxruntime.

    python run_recovery.py FOLDER [--reference truth.npy] [--out image.npy] [--chunk N]

Every file is checked against the sha256 that ``FOLDER/recovery.json`` lists, every ``inputs/NAME.npy`` is fed to
the graph input ``NAME``, and the output ``image`` (C, H, W, float32 in [0, 1]) is saved. With a reference image
(a .npy of the same shape, values in [0, 1]; by default the folder's own reference.npy when it has one) the PSNR is
printed. ``--chunk N`` runs the same graph N iterations at a time, feeding its loop state back between runs and
printing the progress (docs/recovery-graph.md, section 8): the same image, bit for bit. This file is the whole
client: it is what a C++, C#, Java or JavaScript program does with the same folder.

It checks what running a folder you made or trust needs (sha256, dtypes and shapes, and rule 9's bound on the
runs of a chunked recovery); it does not keep every rule of section 12. A folder from elsewhere: read it as
``gs-recover FOLDER`` or ``examples/node/recover.js`` do, which follow them all (the conformance kit, section 13).
"""
import argparse
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load(folder: Path):
    iface = json.loads((folder / "recovery.json").read_text(encoding="utf-8"))
    files = iface["files"]

    def read(rel: str) -> bytes:
        p = (folder / rel).resolve()
        if folder.resolve() not in p.parents or not p.is_file():
            fail(f"{rel} is missing or not a file inside {folder}")
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != files.get(rel):
            fail(f"{rel} does not match its sha256 in recovery.json")
        return data

    graph = read(iface["graph"])
    feeds = {}
    for name, spec in iface["inputs"].items():
        a = np.load(io.BytesIO(read(spec["file"])), allow_pickle=False)
        if str(a.dtype) != spec["dtype"] or list(a.shape) != spec["shape"]:
            fail(f"{spec['file']} holds {a.dtype} {list(a.shape)}, expected {spec['dtype']} {spec['shape']}")
        feeds[name] = a
    reference = None
    if iface.get("reference") == "reference.npy":
        reference = np.load(io.BytesIO(read("reference.npy")), allow_pickle=False)
    return graph, feeds, iface, reference


def run(sess, feeds: dict, iface: dict, chunk: int | None):
    """One run, or runs of ``chunk`` iterations with the loop state fed back (recovery.json's ``resume``)."""
    names = [o.name for o in sess.get_outputs()]
    if not chunk:
        return dict(zip(names, sess.run(None, feeds)))
    resume = iface["resume"]
    feeds, start = dict(feeds), 0
    budget = int(feeds[resume["chunk"]])
    for _ in range(-(-budget // chunk) + 1):   # rule 9: a graph whose `running` never falls stops here
        feeds[resume["start"]] = np.asarray(start, np.int64)
        feeds[resume["chunk"]] = np.asarray(chunk, np.int64)
        out = dict(zip(names, sess.run(None, feeds)))
        obj = out["objective"]
        print(f"  iteration {int(out['iterations'].max())}" + (f": objective {obj[-1].min():.4e}" if len(obj) else ""),
              flush=True)
        if not out[resume["running"]]:
            return out
        feeds.update({k: out[v] for k, v in resume["state"].items()})
        start += chunk
    fail(f"the graph is still running after {-(-budget // chunk) + 1} runs of {chunk} iterations, past its plan's "
         f"{budget} (rule 9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--reference", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--chunk", type=int, default=None, help="iterations per run (progress); default: one run")
    a = ap.parse_args()
    if not (a.folder / "recovery.json").is_file():
        fail(f"{a.folder} has no recovery.json")
    if a.chunk is not None and a.chunk < 1:
        fail(f"--chunk {a.chunk}: a run takes at least 1 iteration")
    try:
        graph, feeds, iface, reference = load(a.folder)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:   # not a folder this client can read
        fail(f"{a.folder} is not a recovery folder this client can read ({type(e).__name__}: {e})".splitlines()[0])
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    out = run(sess, feeds, iface, a.chunk)
    seconds = time.perf_counter() - t
    image = out["image"]
    if a.out is not None:
        np.save(a.out, image, allow_pickle=False)
    line = (f"{iface['model']} c={iface['cut']}: restart {int(out['winner']) + 1} of {len(out['score'])} won after "
            f"{int(out['iterations'][int(out['winner'])])} iterations, {seconds:.1f} s")
    if a.reference is not None or reference is not None:
        ref = (np.load(a.reference, allow_pickle=False) if a.reference is not None else reference).astype(np.float64)
        mse = float(np.mean((image.astype(np.float64) - ref) ** 2))
        line += f", PSNR {10 * np.log10(1.0 / mse):.2f} dB"
    print(line)


if __name__ == "__main__":
    main()
