"""A torch generator rebuilt from an exported model folder: the manifest's architecture, BatchNorm folded
as at export, and every block's weights read from its graphs (where ``blocks[k].parameters`` in the
manifest says; older models: the forward graph's initializer of the parameter's name).

Baselines that train generator weights (IAGAN) and the torch reference need the same generator as the
ONNX artifacts, with no separate checkpoint: this reads it back from the artifacts themselves and checks
that torch and ONNX Runtime then compute the same image.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from gs_onnx.engine.cut import CutGenerator
from gs_onnx.errors import GSError
from gs_onnx.generator.manifest import Manifest

from .architectures import ARCHITECTURES, Generator, build, fuse_batchnorm


def torch_generator(man: Manifest, check: bool = True) -> Generator:
    """The model of ``man`` as a torch :class:`Generator` in eval mode (float32, CPU, BN folded).

    Raises :class:`GSError` when the architecture is unknown, a block's graph lacks one of the module's
    parameters or has a differently shaped one, or (``check``) torch and ONNX Runtime disagree on the
    image of two random latents by more than 1e-4 relative L2.
    """
    arch = man.architecture
    if arch not in ARCHITECTURES:
        raise GSError(f"model {man.name}: architecture {arch!r} has no torch definition")
    config = man.raw.get("architecture", {}).get("config", {})
    gen = fuse_batchnorm(build(arch, **config).eval())
    if len(gen.blocks) != man.depth:
        raise GSError(f"model {man.name}: torch {arch} has {len(gen.blocks)} blocks, the manifest {man.depth}")
    with torch.no_grad():
        for k, blk in enumerate(gen.blocks):
            where = man.raw["blocks"][k].get("parameters")  # absent in models exported before it existed
            inits = {}
            for graph in ("forward", "vjp"):
                spec = getattr(man.blocks[k], graph)
                g = onnx.load(str(man.path(spec.file)), load_external_data=False)
                onnx.load_external_data_for_model(g, str(man.root))
                inits[graph] = {t.name: t for t in g.graph.initializer}
            for name, p in blk.named_parameters():
                loc = where.get(name) if where else {"graph": "forward", "initializer": name, "transpose": False}
                if loc and loc.get("zeros"):
                    p.zero_()
                    continue
                if not loc or loc.get("initializer") not in inits.get(loc.get("graph"), {}):
                    raise GSError(f"model {man.name}: block {k} graph has no weight {name!r}")
                a = numpy_helper.to_array(inits[loc["graph"]][loc["initializer"]])
                if loc.get("transpose"):
                    a = a.T
                if tuple(a.shape) != tuple(p.shape):
                    raise GSError(f"model {man.name}: block {k} weight {name!r} has shape {a.shape}, "
                                  f"torch expects {tuple(p.shape)}")
                p.copy_(torch.from_numpy(np.array(a, dtype=np.float32)))
    if check:
        z = np.random.default_rng(0).standard_normal((2, *man.tensors[man.cut(0).inputs[0]])).astype(np.float32)
        ref = CutGenerator(man, 0, "cpu").forward({man.cut(0).inputs[0]: z})
        with torch.no_grad():
            x = gen.run({"z": torch.from_numpy(z)})["x"].numpy()
        scale, shift = man.to_unit()
        err = np.linalg.norm(x * scale + shift - ref) / max(np.linalg.norm(ref), 1e-12)
        if err > 1e-4:
            raise GSError(f"model {man.name}: torch and ONNX Runtime images differ (rel. L2 {err:.2e})")
    return gen
