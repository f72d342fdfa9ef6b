"""A classical denoiser as an ONNX graph: sliding-window DCT hard thresholding (Yu and Sapiro, "DCT image denoising:
a simple and effective image denoising algorithm", IPOL 2011), followed by an empirical Wiener stage (as BM3D's
second step, with the same DCT patches in place of BM3D's grouped blocks).

Stage 1: every 8 x 8 patch of the image (stride 1, borders mirrored) goes to the 2-D DCT, coefficients below ``thr *
sigma`` are set to zero (the mean, coefficient 0, is always kept), and the patches come back and are averaged where
they overlap, each patch weighted by ``1 / (1 + the coefficients it kept)`` (a patch that kept few coefficients is a
smoother, surer estimate). Stage 2 (``wiener``): stage 1's image is the pilot; every coefficient ``v`` of the noisy
image's patch is shrunk to ``v p^2 / (p^2 + sigma^2)``, ``p`` the pilot's coefficient there (the mean kept), and
the patches are averaged with weights ``1 / sum(shrink^2)``. Colour images are denoised in the opponent colour
space (mean, red - blue, red - 2 green + blue: the three channels' noise independent for white RGB noise), each
channel at its own noise level.

It needs no training and no weights, and knows nothing of faces: where the shipped network denoises photos poorly
(it flattens texture it never saw), this one is within 0.1 dB of BM3D on COCO photos at sigma 0.005-0.03 and
0.35 dB at 0.1 (docs/results.md; the Wiener stage adds 0.1-0.4 dB to stage 1 alone). As an ONNX graph (grouped
``Conv`` by the 64 DCT basis images, a threshold, a shrinkage, grouped ``ConvTranspose``), it runs wherever the
recovery graph runs and can be inlined into it (the same inputs and output as the network denoisers: ``x`` (B, C,
H, W), ``sigma`` (B, 1, 1, 1) -> ``denoised``).

Examples
--------
>>> import numpy as np
>>> d = DCTDenoiser()
>>> x = np.full((2, 3, 16, 16), 0.5, np.float32)
>>> rng = np.random.default_rng(0)
>>> noisy = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
>>> out = d(noisy, np.array([0.05, 0.05]))
>>> out.shape, bool(np.abs(out - x).std() < 0.3 * np.abs(noisy - x).std())   # most of the noise removed
((2, 3, 16, 16), True)
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..physics.onnxform import CONV_OPS, onnx_modules, spell_out_conv
from .runtime import Device, active_provider, create_session

#: The patch size and the threshold in units of the noise level (Yu and Sapiro's 8 and 3; 2.7 was better on the
#: first 3 CelebA train faces and COCO photos 100-102 at sigma 0.01-0.1, and inside plug-and-play).
PATCH = 8
THRESHOLD = 2.7
#: The empirical Wiener stage after the hard threshold (+0.3-0.55 dB inside plug-and-play on the tuning faces and
#: photos, docs/results.md).
WIENER = True
#: RGB -> opponent colour space (rows: mean, red - blue, red - 2 green + blue), as BM3D's ``opp`` transform.
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, -0.5], [0.25, -0.5, 0.25]])


def dct_basis(p: int = PATCH) -> np.ndarray:
    """The orthonormal 2-D DCT-II basis of p x p patches, (p * p, p, p): coefficient k of a patch X is
    ``(basis[k] * X).sum()`` and ``X = sum_k coef_k basis[k]``.

    >>> b = dct_basis(4)
    >>> bool(np.allclose(b.reshape(16, 16) @ b.reshape(16, 16).T, np.eye(16)))
    True
    """
    k = np.arange(p)[:, None]
    i = np.arange(p)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * p)) * np.sqrt(2.0 / p)
    d[0] /= np.sqrt(2.0)
    return np.einsum("ka,lb->klab", d, d).reshape(p * p, p, p)


def dct_denoiser_model(channels: int = 3, patch: int = PATCH, threshold: float = THRESHOLD, wiener: bool = WIENER):
    """The denoiser as an ONNX ModelProto (opset 18): inputs ``x`` (B, channels, H, W) float32 with H, W > patch - 1
    and ``sigma`` (B, 1, 1, 1) float32 (the noise level of each image, RGB, per pixel); output ``denoised``.
    ``wiener``: add the empirical Wiener stage (the shipped form); without it, hard thresholding alone."""
    onnx, helper, numpy_helper = onnx_modules()
    FLOAT = onnx.TensorProto.FLOAT
    p, k2, C = int(patch), int(patch) ** 2, int(channels)
    basis = dct_basis(p).astype(np.float32)
    if C == 3:
        colour, inverse = OPPONENT, np.linalg.inv(OPPONENT)
        scale = np.sqrt((OPPONENT ** 2).sum(axis=1))   # each opponent channel's noise std per unit of RGB noise
    elif C == 1:
        colour, inverse, scale = np.eye(1), np.eye(1), np.ones(1)
    else:
        raise GSError(f"the DCT denoiser takes 1 or 3 channels, got {C}")
    thr = np.repeat(threshold * scale, k2).reshape(C, k2)
    thr[:, 0] = -1.0   # the mean of a patch is always kept (|v| > -sigma)
    inits = {
        "colour": colour.astype(np.float32).reshape(C, C, 1, 1),
        "inverse": inverse.astype(np.float32).reshape(C, C, 1, 1),
        "basis": np.tile(basis[:, None], (C, 1, 1, 1)),                  # (C k2, 1, p, p): C groups of k2 filters
        "ones": np.ones((C, 1, p, p), np.float32),
        "thr": thr.astype(np.float32).reshape(1, C * k2, 1, 1),
        "pads": np.array([0, 0, p - 1, p - 1, 0, 0, p - 1, p - 1], np.int64),
        "sum_group": np.ones((C, k2, 1, 1), np.float32),                 # the k2 coefficients of a group summed
        "spread": np.ones((C * k2, 1, 1, 1), np.float32),                # a group's one value to its k2 channels
        "one": np.array(1.0, np.float32),
        "start": np.array([p - 1, p - 1], np.int64),
        "axes": np.array([2, 3], np.int64),
    }
    if wiener:
        inits.update({
            "scale2": np.repeat(scale ** 2, k2).astype(np.float32).reshape(1, C * k2, 1, 1),   # noise variance per unit
            "dc": np.tile((np.arange(k2) == 0).astype(np.float32), C).reshape(1, C * k2, 1, 1),  # the mean: shrink 1
            "tiny": np.array(1e-20, np.float32),   # 0 / 0 where the pilot's coefficient and sigma are both 0
        })
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "colour"], ["o"]),
        n("Pad", ["o", "pads"], ["padded"], mode="reflect"),
        n("Conv", ["padded", "basis"], ["coef"], group=C),                         # (B, C k2, H + p - 1, W + p - 1)
        n("Mul", ["sigma", "thr"], ["limit"]),
        n("Abs", ["coef"], ["mag"]),
        n("Greater", ["mag", "limit"], ["keep"]),
        n("Cast", ["keep"], ["keepf"], to=FLOAT),
        n("Mul", ["coef", "keepf"], ["kept"]),
        n("Conv", ["keepf", "sum_group"], ["count"], group=C),                   # (B, C, h, w): kept per patch
        n("Add", ["count", "one"], ["count1"]),
        n("Reciprocal", ["count1"], ["weight"]),
        n("Conv", ["weight", "spread"], ["weight_k"], group=C),                  # each patch's weight, per coefficient
        n("Mul", ["kept", "weight_k"], ["weighted"]),
        n("ConvTranspose", ["weighted", "basis"], ["acc"], group=C),             # (B, C, H + 2p - 2, W + 2p - 2)
        n("ConvTranspose", ["weight", "ones"], ["wsum"], group=C),
        n("Div", ["acc", "wsum"], ["mean"]),
        n("Shape", ["x"], ["xshape"]),
        n("Gather", ["xshape", "axes"], ["hw"], axis=0),                          # (H, W)
        n("Add", ["hw", "start"], ["stop"]),
        n("Slice", ["mean", "start", "stop", "axes"], ["cropped"]),
    ]
    last = "cropped"
    if wiener:   # stage 2: the stage-1 image (opponent colours, cropped) is the pilot of an empirical Wiener filter
        nodes += [
            n("Pad", ["cropped", "pads"], ["ppad"], mode="reflect"),
            n("Conv", ["ppad", "basis"], ["pcoef"], group=C),
            n("Mul", ["pcoef", "pcoef"], ["p2"]),
            n("Mul", ["sigma", "sigma"], ["s2"]),
            n("Mul", ["s2", "scale2"], ["noise2"]),
            n("Add", ["p2", "noise2"], ["den0"]),
            n("Add", ["den0", "tiny"], ["den"]),
            n("Div", ["p2", "den"], ["w0"]),
            n("Max", ["w0", "dc"], ["w"]),
            n("Mul", ["coef", "w"], ["est"]),
            n("Mul", ["w", "w"], ["wsq"]),
            n("Conv", ["wsq", "sum_group"], ["wnorm"], group=C),
            n("Reciprocal", ["wnorm"], ["weight2"]),
            n("Conv", ["weight2", "spread"], ["weight2_k"], group=C),
            n("Mul", ["est", "weight2_k"], ["weighted2"]),
            n("ConvTranspose", ["weighted2", "basis"], ["acc2"], group=C),
            n("ConvTranspose", ["weight2", "ones"], ["wsum2"], group=C),
            n("Div", ["acc2", "wsum2"], ["mean2"]),
            n("Slice", ["mean2", "start", "stop", "axes"], ["cropped2"]),
        ]
        last = "cropped2"
    nodes.append(n("Conv", [last, "inverse"], ["denoised"]))
    for i, node in enumerate(nodes):   # named, so that copies inlined in another graph stay apart
        node.name = f"dct{i}_{node.output[0]}"
        if node.op_type in CONV_OPS:   # every attribute spelled out (onnxruntime-web's WebGPU)
            spell_out_conv(node, inits[node.input[1]].shape[2:])
    graph = helper.make_graph(
        nodes, "dct_denoiser",
        [helper.make_tensor_value_info("x", FLOAT, ["B", C, "H", "W"]),
         helper.make_tensor_value_info("sigma", FLOAT, ["B", 1, 1, 1])],
        [helper.make_tensor_value_info("denoised", FLOAT, ["B", C, "H", "W"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="gs-onnx")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


class DCTDenoiser:
    """``D(x, sigma)`` of :func:`dct_denoiser_model` on ONNX Runtime: x (B, 3, H, W) float32, sigma a number or
    (B,) -> (B, 3, H, W); the same calling convention as :class:`gs_onnx.engine.denoiser.Denoiser`."""

    name = "dct"

    def __init__(self, device: Device = "auto", threads: int = 0, batch: int = 16, threshold: float = THRESHOLD,
                 wiener: bool = WIENER):
        self.threshold = float(threshold)
        self.wiener = bool(wiener)
        self.model = dct_denoiser_model(3, PATCH, self.threshold, self.wiener)
        self.session = create_session(self.model.SerializeToString(), device, threads)
        self.provider = active_provider(self.session)
        self.batch = int(batch)
        self.calls = 0

    def describe(self) -> dict:
        arch = "sliding-window DCT hard thresholding (Yu and Sapiro 2011)"
        return {"name": self.name, "architecture": arch + (", then empirical Wiener" if self.wiener else ""),
                "patch": PATCH, "threshold": self.threshold, "wiener": self.wiener, "provider": self.provider}

    def __call__(self, x: np.ndarray, sigma) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < PATCH:
            raise GSError(f"the DCT denoiser takes (B, 3, H, W) images with H, W >= {PATCH}, got {x.shape}")
        s = np.broadcast_to(np.asarray(sigma, np.float32).reshape(-1), (len(x),)).astype(np.float32)
        if not np.all(np.isfinite(s)) or s.min() < 0:
            raise GSError("the denoiser's noise level must be finite and >= 0")
        out = np.empty_like(x)
        for lo in range(0, len(x), self.batch):
            hi = min(len(x), lo + self.batch)
            out[lo:hi] = self.session.run(["denoised"], {"x": np.ascontiguousarray(x[lo:hi]),
                                                         "sigma": s[lo:hi].reshape(-1, 1, 1, 1)})[0]
        self.calls += len(x)
        return out
