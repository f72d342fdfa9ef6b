"""Compressed-sensing operators: the dense Gaussian matrix of the paper and the subsampled randomized DCT.

Both map an image (flattened in C, H, W order) to ``m`` measurements, ``m`` free (``--m`` / ``--ratio``), and
take the paper's noise rule (:func:`gs_onnx.physics.noise.paper_sigma`).

Examples
--------
>>> import numpy as np
>>> A = GaussianOperator(m=100, n=12288, seed=0)
>>> x = np.random.default_rng(1).random((2, 12288), dtype=np.float32)
>>> A.forward(x).shape, A.adjoint(A.forward(x)).shape
((2, 100), (2, 12288))
>>> B = from_description(A.describe())
>>> bool(np.array_equal(A.matrix(), B.matrix()))
True
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GSError
from .base import Operator, _field, _probe, check_int, from_description, in_shape_of, register

#: On the CPU a dense operator goes into the graph from this many matrix entries on (measured,
#: docs/benchmarks.md).
CPU_GRAPH_MIN_ENTRIES = 50_000_000
#: Rows of the Gaussian matrix drawn from one seeded stream; part of the format, never change it.
ROWS_PER_BLOCK = 256
#: Refuse a dense matrix that would take more than this fraction of the available memory.
MEMORY_SAFETY_FRACTION = 0.8
_GB = 1e9


#: Bytes per block of :meth:`GaussianOperator.row_blocks` (64 rows of a 64 px image's A, 16 of a 128 px one),
#: read twice from the cache; measured best or within 7 % of the best block size for one image at both sizes
#: (docs/benchmarks.md, "one pass over A or two").
FUSED_BLOCK_BYTES = 3 << 20


def dense_bytes(m: int, n: int) -> int:
    """Bytes of a dense float32 ``m`` x ``n`` matrix (``4 m n``)."""
    return 4 * int(m) * int(n)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def _cgroup_headroom() -> int | None:
    """Bytes this process's memory cgroup still allows (limit minus usage), or None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2 ("max" -> None)
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is None or limit >= 1 << 60:  # v1 reports "no limit" as a huge number
            continue
        usage = _read_int(usage_file) or 0
        return max(limit - usage, 0)
    return None


def available_memory_bytes() -> int:
    """Memory available to this process, in bytes; 0 when it cannot be determined.

    Reads ``MemAvailable`` from ``/proc/meminfo`` when present, else ``os.sysconf`` (available physical
    pages times page size); a container's cgroup memory limit (minus current usage) caps the result.
    """
    available: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024  # reported in kB
                    break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            available = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            available = None
    headroom = _cgroup_headroom()
    if headroom is not None:
        available = headroom if available is None else min(available, headroom)
    return max(int(available or 0), 0)


def _gb(nbytes: float) -> str:
    gb = nbytes / _GB
    return f"{gb:.2f} GB" if gb >= 0.01 else f"{gb:.3g} GB"


#: Threads that draw a dense Gaussian matrix, block by block (0: one per core); the matrix is the same bit for bit
#: whatever the number (each block has its own seed).
GENERATION_THREADS = 0


@register
class GaussianOperator(Operator):
    """Dense Gaussian matrix with i.i.d. N(0, 1/m) float32 entries, reproducible from a seed.

    Rows ``[256 j, 256 (j + 1))`` of ``A`` are
    ``Generator(PCG64(SeedSequence([seed, j]))).standard_normal((rows, n), dtype=float32) / float32(sqrt(m))``
    (the last block may be shorter). The matrix is built lazily on the first :meth:`matrix`,
    :meth:`forward` or :meth:`adjoint` call and cached.

    Parameters
    ----------
    m, n : int
        Shape of ``A`` (both > 0).
    seed : int
        Non-negative seed; the same ``(m, n, seed)`` always gives the same matrix, bit for bit.
    chunk_rows : int, optional
        Rows generated per step while filling the matrix (a memory/speed knob for generation only; it
        does not change ``A``).
    max_bytes : int, optional
        Largest dense matrix allowed, in bytes. By default 80% of :func:`available_memory_bytes`.
    image_shape : (C, H, W), optional
        The shape of the images measured (``prod == n``); recorded so that ``A(x)`` takes shaped batches.
    stream : bool
        Never hold the whole matrix: :meth:`forward` and :meth:`adjoint` generate it ``chunk_rows`` rows at
        a time and apply each chunk (memory ``chunk_rows x n`` floats, time dominated by drawing the
        numbers). For one-shot use such as measuring images (``gs-measure``); an optimiser applying A
        hundreds of times wants the cached dense matrix.

    Raises
    ------
    GSError
        Bad parameters, or the dense matrix would not fit in memory (checked here, before any
        allocation, and again before materialising).
    """

    type = "gaussian"
    noise_default = "paper"
    counts_measurements = True

    def __init__(self, m: int, n: int, seed: int, *, image_shape=None, chunk_rows: int = 1024,
                 max_bytes: int | None = None, stream: bool = False):
        for name, v, lo in (("m", m, 1), ("n", n, 1), ("seed", seed, 0), ("chunk_rows", chunk_rows, 1)):
            check_int(v, f"gaussian operator: {name}", lo)
        _set_cs_shapes(self, int(m), int(n), image_shape)
        self.seed = int(seed)
        self.chunk_rows = int(chunk_rows)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._matrix: np.ndarray | None = None
        self.stream = bool(stream)
        if not self.stream:
            self._check_memory()

    @property
    def nbytes(self) -> int:
        return dense_bytes(self.m, self.n)

    def norm_sq_bound(self) -> float:
        """An upper bound of ``||A||_2^2`` without reading A: for an m x n matrix of i.i.d. N(0, 1) entries the
        largest singular value exceeds ``sqrt(m) + sqrt(n) + t`` with probability at most ``exp(-t^2 / 2)``
        (Davidson and Szarek 2001); with t = 8 (1e-14) and A's 1/sqrt(m) scaling,
        ``(1 + sqrt(n / m) + 8 / sqrt(m))^2``. A step of 1 / bound is safe for gradient methods.

        >>> A = GaussianOperator(300, 1000, seed=0)
        >>> from gs_onnx.solve.lasso import spectral_norm_sq
        >>> exact = spectral_norm_sq(A) / 1.01
        >>> bool(exact < A.norm_sq_bound() < 1.6 * exact)
        True
        """
        return (1.0 + math.sqrt(self.n / self.m) + 8.0 / math.sqrt(self.m)) ** 2

    def _check_memory(self) -> None:
        need = self.nbytes
        if self.max_bytes is not None:
            if need > self.max_bytes:
                raise GSError(
                    f"gaussian operator {self.m}x{self.n} needs {_gb(need)} as a dense float32 matrix, "
                    f"above the limit of {_gb(self.max_bytes)} (max_bytes)"
                )
            return
        avail = available_memory_bytes()
        if avail > 0 and need > MEMORY_SAFETY_FRACTION * avail:
            raise GSError(
                f"gaussian operator {self.m}x{self.n} needs {_gb(need)} as a dense float32 matrix, "
                f"but only {_gb(avail)} of memory is available (limit {MEMORY_SAFETY_FRACTION:.0%}); "
                f"use fewer measurements"
            )

    def _block(self, j: int) -> np.ndarray:
        """Rows ``[256 j, min(256 (j + 1), m))`` of ``A``, float32."""
        start = j * ROWS_PER_BLOCK
        rows = min(ROWS_PER_BLOCK, self.m - start)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, j])))
        block = rng.standard_normal((rows, self.n), dtype=np.float32)
        block /= np.float32(math.sqrt(self.m))
        return block

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of ``A`` (float32, shape ``(stop - start, n)``), generated without the cache.

        Any split of ``[0, m)`` into row ranges reproduces :meth:`matrix` exactly. ``out``, if given,
        receives the rows.
        """
        if not 0 <= start <= stop <= self.m:
            raise GSError(f"row range [{start}, {stop}) outside [0, {self.m})")
        if out is None:
            out = np.empty((stop - start, self.n), dtype=np.float32)
        for j in range(start // ROWS_PER_BLOCK, -(-stop // ROWS_PER_BLOCK)):
            b0 = j * ROWS_PER_BLOCK
            lo, hi = max(start, b0), min(stop, b0 + ROWS_PER_BLOCK)
            out[lo - start : hi - start] = self._block(j)[lo - b0 : hi - b0]
        return out

    def _probe_rows(self, k: int) -> np.ndarray:
        """The first k rows only (generated without building the whole matrix)."""
        rows = self._matrix[:k] if self._matrix is not None else self.rows(0, k)
        return rows @ _probe(self.n)[0]

    def matrix(self) -> np.ndarray:
        """The dense matrix ``A``, float32, shape ``(m, n)``, entries N(0, 1/m); cached, do not modify."""
        if self._matrix is None:
            self._check_memory()
            a = np.empty((self.m, self.n), dtype=np.float32)
            scale = np.float32(math.sqrt(self.m))

            def fill(j: int) -> None:  # block j drawn straight into its rows (numpy releases the GIL while drawing)
                lo, hi = j * ROWS_PER_BLOCK, min((j + 1) * ROWS_PER_BLOCK, self.m)
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, j])))
                rng.standard_normal(out=a[lo:hi], dtype=np.float32)
                a[lo:hi] /= scale

            blocks = range(-(-self.m // ROWS_PER_BLOCK))
            workers = min(len(blocks), GENERATION_THREADS or os.cpu_count() or 1)
            if workers > 1:
                from concurrent.futures import ThreadPoolExecutor

                ex = ThreadPoolExecutor(workers)
                try:
                    for f in [ex.submit(fill, j) for j in blocks]:
                        f.result()
                finally:   # Ctrl-C: the blocks not started are dropped at once, not drawn first
                    ex.shutdown(wait=True, cancel_futures=True)
            else:
                list(map(fill, blocks))
            a.flags.writeable = False
            self._matrix = a
        return self._matrix

    def _chunks(self):
        step = max(1, self.chunk_rows // ROWS_PER_BLOCK) * ROWS_PER_BLOCK
        for start in range(0, self.m, step):
            stop = min(start + step, self.m)
            yield start, stop, self.rows(start, stop)

    def row_blocks(self, rows: int | None = None):
        """``(start, stop, A[start:stop])`` for consecutive row ranges covering ``[0, m)``: slices of the cached
        matrix (``rows`` each; default: :data:`FUSED_BLOCK_BYTES` worth, a multiple of 8 rows), or, for a
        streamed operator, rows generated on the fly (whole generator blocks, each once).

        A solver that needs both ``A x`` and ``A^T r`` with ``r`` known row by row (the L2 data term,
        :func:`gs_onnx.physics.datafit.data_fit`) reads each block twice while it is still in the cache: one pass over
        ``A`` instead of two.
        """
        if self.stream and self._matrix is None:
            yield from self._chunks()
            return
        a = self.matrix()
        if rows is None:
            rows = max(8, FUSED_BLOCK_BYTES // (4 * self.n) // 8 * 8)
        m = self.m
        for start in range(0, m, rows):
            yield start, min(start + rows, m), a[start:start + rows]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.stream and self._matrix is None:
            out = np.empty((x.shape[0], self.m), dtype=np.float32)
            for start, stop, a in self._chunks():
                out[:, start:stop] = (a @ x.T).T
            return out
        # (A x^T)^T, not x A^T: OpenBLAS multiplies a few rows by a transposed matrix several times slower
        # (measured 25 vs 235 ms for 3 x 12288 by 12288 x 2000)
        return np.ascontiguousarray((self.matrix() @ x.T).T)

    def _adjoint(self, y: np.ndarray) -> np.ndarray:
        if self.stream and self._matrix is None:
            out = np.zeros((y.shape[0], self.n), dtype=np.float32)
            for start, stop, a in self._chunks():
                out += y[:, start:stop] @ a
            return out
        return y @ self.matrix()

    def describe(self) -> dict[str, Any]:
        return {
            "type": "gaussian",
            "m": self.m,
            "n": self.n,
            "seed": self.seed,
            "dtype": "float32",
            "entries": "N(0,1/m)",
            "rows_per_block": ROWS_PER_BLOCK,
            "rng": f"numpy PCG64, SeedSequence([seed, block]), {ROWS_PER_BLOCK} rows per block",
            **_shape_field(self),
        }

    @classmethod
    def from_description(cls, d, *, max_bytes: int | None = None, **_):
        if d.get("rows_per_block", ROWS_PER_BLOCK) != ROWS_PER_BLOCK:
            raise GSError(f"unsupported gaussian rows_per_block {d.get('rows_per_block')!r} (only {ROWS_PER_BLOCK})")
        if d.get("entries", "N(0,1/m)") != "N(0,1/m)":
            raise GSError(f"unsupported gaussian entries {d.get('entries')!r} (only 'N(0,1/m)')")
        m, n, seed = _field(d, "m", int), _field(d, "n", int), _field(d, "seed", int)
        return cls(m, n, seed, image_shape=_image_shape(d, n), max_bytes=max_bytes)

    @classmethod
    def build(cls, image_shape, seed, *, m, one_shot=False, **_):
        return cls(m, int(np.prod(image_shape)), seed, image_shape=image_shape, stream=one_shot)

    def cpu_place(self) -> str:
        # docs/benchmarks.md: ONNX Runtime's Gemm beats numpy's BLAS on the 8002 x 49152 A of the 128 px models
        # and loses on the 2000 x 12288 A of the 64 px DCGAN, most at batch 3
        return "graph" if self.m * self.n >= CPU_GRAPH_MIN_ENTRIES else "host"

    def onnx_form(self):
        """``A`` is a run-time input of the graph (m, n) float32, bound once per session (device-resident
        on a GPU); ``A x`` is ``Gemm(x, A, transB=1)`` and ``A^T r`` is ``Gemm(r, A)``: both read A in place
        (the fastest of the MatMul/Gemm/transpose arrangements measured with ONNX Runtime's CPU kernels)."""
        from .onnxform import OnnxForm

        return OnnxForm({"A": ((self.m, self.n), self.matrix)},
                        lambda b, x: b.op("Gemm", [x, "A"], "Ax", transB=1),
                        lambda b, r: b.op("Gemm", [r, "A"], "ATr"))




@register
class SubsampledDCTOperator(Operator):
    """Subsampled randomized DCT: ``A x = sqrt(n/m) * S C D x``, O(n log n) time and O(n) memory.

    ``D`` flips the sign of each of the n entries at random, ``C`` is the orthonormal DCT-II of the
    flattened vector (scipy.fft), ``S`` keeps m of its n outputs chosen at random (in increasing order).
    The scale ``sqrt(n/m)`` matches the Gaussian operator's: every row has squared norm n/m (a Gaussian
    row's expectation) and ``E ||A x||^2 = ||x||^2``; the rows are orthogonal, ``A A^T = (n/m) I``. The
    adjoint is ``A^T y = sqrt(n/m) * D C^T S^T y``.

    Signs and rows come from ``Generator(PCG64(SeedSequence([seed, 2**31 - 2])))``: first
    ``integers(0, 2, n)`` (0 -> +1, 1 -> -1), then ``permutation(n)[:m]`` sorted. The same
    ``(m, n, seed)`` gives the same operator everywhere.

    Parameters
    ----------
    m, n : int
        Shape of ``A`` (1 <= m <= n).
    seed : int
        Non-negative seed.
    """

    type = "srdct"
    noise_default = "paper"
    counts_measurements = True
    #: Second entry of the SeedSequence of signs and rows (A's Gaussian blocks use 0, 1, ...; noise 2**31-1).
    STREAM = 2**31 - 2

    def __init__(self, m: int, n: int, seed: int, *, image_shape=None):
        for name, v, lo in (("m", m, 1), ("n", n, 1), ("seed", seed, 0)):
            check_int(v, f"srdct operator: {name}", lo)
        if m > n:
            raise GSError(f"srdct operator needs m <= n, got m={m}, n={n}")
        _set_cs_shapes(self, int(m), int(n), image_shape)
        self.seed = int(seed)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.STREAM])))
        self.signs = (1 - 2 * rng.integers(0, 2, size=self.n)).astype(np.float32)
        self.rows = np.sort(rng.permutation(self.n)[: self.m])
        self.scale = np.float32(math.sqrt(self.n / self.m))

    @property
    def nbytes(self) -> int:
        return self.signs.nbytes + self.rows.nbytes

    def _forward(self, x: np.ndarray) -> np.ndarray:
        from scipy import fft

        c = fft.dct(x * self.signs, type=2, norm="ortho", axis=1, workers=-1)
        return np.ascontiguousarray(c[:, self.rows] * self.scale, dtype=np.float32)

    def _adjoint(self, y: np.ndarray) -> np.ndarray:
        from scipy import fft

        z = np.zeros((y.shape[0], self.n), dtype=np.float32)
        z[:, self.rows] = y * self.scale
        return (fft.idct(z, type=2, norm="ortho", axis=1, workers=-1) * self.signs).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {"type": "srdct", "m": self.m, "n": self.n, "seed": self.seed, "dtype": "float32",
                "transform": "orthonormal DCT-II of the flattened C,H,W vector", "scale": "sqrt(n/m)",
                "rng": f"numpy PCG64, SeedSequence([seed, {self.STREAM}]): integers(0, 2, n) signs, "
                       "then sorted permutation(n)[:m] rows", **_shape_field(self)}

    @classmethod
    def from_description(cls, d, **_):
        m, n, seed = _field(d, "m", int), _field(d, "n", int), _field(d, "seed", int)
        return cls(m, n, seed, image_shape=_image_shape(d, n))

    @classmethod
    def build(cls, image_shape, seed, *, m, **_):
        return cls(m, int(np.prod(image_shape)), seed, image_shape=image_shape)

    def cpu_place(self) -> str:
        # scipy's real DCT was 4-5x faster than ONNX Runtime's DFT node (docs/benchmarks.md); against the
        # matrix-product DFT the whole began c=2 objective measured 0.98-1.03x (6 interleaved rounds, 2 cores):
        # the host keeps it on the CPU (no second copy of the DFT matrices per session)
        return "host"

    def _dct_tables(self):
        """Constants of the DCT-II through one complex DFT of length n (Makhoul 1980): the even/odd reordering
        ``perm`` and its inverse, and per kept row k the weights (c_k, s_k) with
        ``(A x)_j = c_k Re V_k + s_k Im V_k``, V = DFT(P D x), k = rows[j] (orthonormal scale and sqrt(n/m)
        folded in)."""
        n = self.n
        perm = np.concatenate([np.arange(0, n, 2), np.arange(n - 1 - n % 2, 0, -2)]).astype(np.int64)
        inv = np.empty(n, np.int64)
        inv[perm] = np.arange(n)
        k = self.rows.astype(np.float64)
        theta = np.pi * k / (2 * n)
        norm = np.where(k == 0, math.sqrt(1 / (4 * n)), math.sqrt(1 / (2 * n))) * 2 * math.sqrt(n / self.m)
        return perm, inv, (norm * np.cos(theta)), (norm * np.sin(theta))

    def onnx_form(self):
        """Signs, reordering, the complex DFT of length n, the kept rows; the adjoint scatters the rows by a Gather
        from a zero-padded copy (no Scatter op) and applies the same DFT.

        Where n = N1 N2 with both factors at most :data:`MATMUL_DFT_MAX` (every image size gs-onnx ships), the DFT is
        two float32 matrix products with a twiddle between them (Cooley-Tukey: N1-point DFTs, twiddle, N2-point
        DFTs): 2-5 ms for the 128 px images on two CPU cores, about 1e-6 of relative error, where ONNX Runtime's
        ``DFT`` node of length 49152 took 95 ms in float64 (its float32 loses 1e-4); other n keep the ``DFT`` node."""
        from .onnxform import OnnxForm

        perm, inv, c, s_ = self._dct_tables()
        full = np.zeros(self.n, np.int64)
        full[self.rows] = np.arange(1, self.m + 1)
        split = dft_factors(self.n)
        if split is None:
            return self._dft_node_form(perm, inv, c, s_, full)
        n1, n2 = split

        def spectral(idx):  # spectral index j = k1 + N1 k2 -> its place k1 N2 + k2 in the (N1, N2) product
            return ((idx % n1) * n2 + idx // n1).astype(np.int64)

        def consts(b):
            k1, k2 = np.arange(n1), np.arange(n2)
            f1 = np.exp(-2j * np.pi * np.outer(k1, k1) / n1)
            f2 = np.exp(-2j * np.pi * np.outer(k2, k2) / n2)
            tw = np.exp(-2j * np.pi * np.outer(k1, k2) / self.n)
            f32 = lambda a, h: b.const(np.ascontiguousarray(a, np.float32), h)  # noqa: E731
            return (f32(f1.real, "f1r"), f32(f1.imag, "f1i"), f32(f2.real, "f2r"), f32(f2.imag, "f2i"),
                    f32(tw.real, "twr"), f32(tw.imag, "twi"))

        def stage2(b, zr, zi, F2r, F2i, imag: bool):
            xr = b.op("Sub", [b.op("MatMul", [zr, F2r], "a"), b.op("MatMul", [zi, F2i], "b")], "Xr")
            flat = b.const(np.asarray([-1, self.n], np.int64), "flatn")
            out = [b.op("Reshape", [xr, flat], "Xrf")]
            if imag:
                xi = b.op("Add", [b.op("MatMul", [zr, F2i], "c"), b.op("MatMul", [zi, F2r], "d")], "Xi")
                out.append(b.op("Reshape", [xi, flat], "Xif"))
            return out

        def twiddle(b, yr, yi, Tr, Ti):
            zr = b.op("Sub", [b.op("Mul", [yr, Tr], "yrt"), b.op("Mul", [yi, Ti], "yit")], "zr")
            zi = b.op("Add", [b.op("Mul", [yr, Ti], "yrti"), b.op("Mul", [yi, Tr], "yitr")], "zi")
            return zr, zi

        def fwd(b, x):
            F1r, F1i, F2r, F2i, Tr, Ti = consts(b)
            v = b.op("Gather", [b.op("Mul", [x, b.data(self.signs, "dct_signs")], "xs"), b.data(perm, "dct_perm")],
                     "v", axis=1)
            a3 = b.op("Reshape", [v, b.const(np.asarray([-1, n1, n2], np.int64), "grid")], "v3")
            zr, zi = twiddle(b, b.op("MatMul", [F1r, a3], "yr"), b.op("MatMul", [F1i, a3], "yi"), Tr, Ti)
            xr, xi = stage2(b, zr, zi, F2r, F2i, imag=True)
            rows = b.data(spectral(self.rows), "dct_rows")
            re = b.op("Mul", [b.op("Gather", [xr, rows], "Vr", axis=1), b.data(c.astype(np.float32), "dct_c")], "cre")
            im = b.op("Mul", [b.op("Gather", [xi, rows], "Vi", axis=1), b.data(s_.astype(np.float32), "dct_s")], "sim")
            return b.op("Add", [re, im], "Ax")

        def adj(b, r):
            F1r, F1i, F2r, F2i, Tr, Ti = consts(b)
            pads = b.const(np.asarray([0, 1, 0, 0], np.int64), "pads")
            scatter = b.data(full, "dct_full")
            grid = b.const(np.asarray([-1, n1, n2], np.int64), "grid")
            ur = b.op("Reshape", [b.op("Gather", [b.op("Pad", [b.op("Mul", [r, b.data(c.astype(np.float32), "dct_c")],
                                                                        "rc"), pads], "rcp"), scatter], "Ur", axis=1),
                                  grid], "Ur3")
            ui = b.op("Reshape", [b.op("Gather", [b.op("Pad", [b.op("Mul", [r, b.data(-s_.astype(np.float32),
                                                                                      "dct_s_neg")], "rs"), pads],
                                                        "rsp"), scatter], "Ui", axis=1), grid], "Ui3")
            yr = b.op("Sub", [b.op("MatMul", [F1r, ur], "p"), b.op("MatMul", [F1i, ui], "q")], "ayr")
            yi = b.op("Add", [b.op("MatMul", [F1r, ui], "p2"), b.op("MatMul", [F1i, ur], "q2")], "ayi")
            zr, zi = twiddle(b, yr, yi, Tr, Ti)
            (xr,) = stage2(b, zr, zi, F2r, F2i, imag=False)
            x = b.op("Gather", [xr, b.data(spectral(inv), "dct_inv")], "xp", axis=1)
            return b.op("Mul", [x, b.data(self.signs, "dct_signs")], "ATr")

        return OnnxForm({}, fwd, adj)

    def _dft_node_form(self, perm, inv, c, s_, full):
        """The form with ONNX's ``DFT`` node (float64), for lengths that do not split into two small factors."""
        from .onnxform import OnnxForm

        def fwd(b, x):
            v = b.op("Gather", [b.op("Mul", [x, b.data(self.signs, "dct_signs")], "xs"), b.data(perm, "dct_perm")],
                     "v", axis=1)
            v3 = b.op("Cast", [b.op("Unsqueeze", [v, b.const(np.asarray([2], np.int64), "axes")], "v3")], "v3d",
                      to=11)
            V = b.op("DFT", [v3], "V", axis=1, onesided=0)     # float64: ONNX Runtime's float32 DFT loses 1e-4
            Vk = b.op("Gather", [V, b.data(self.rows.astype(np.int64), "dct_rows")], "Vk", axis=1)   # (B, m, 2)
            cs = b.data(np.stack([c, s_], axis=1), "dct_cs", dtype=np.float64)
            y = b.op("ReduceSum", [b.op("Mul", [Vk, cs], "Vcs"), b.const(np.asarray([2], np.int64), "axes")],
                     "Axd", keepdims=0)
            return b.op("Cast", [y], "Ax", to=1)

        def adj(b, r):
            cs = b.data(np.stack([c, -s_], axis=1), "dct_csadj", dtype=np.float64)
            r3 = b.op("Cast", [b.op("Unsqueeze", [r, b.const(np.asarray([2], np.int64), "axes")], "r3")], "r3d", to=11)
            u = b.op("Mul", [r3, cs], "u")
            padded = b.op("Pad", [u, b.const(np.asarray([0, 1, 0, 0, 0, 0], np.int64), "pads")], "upad")
            U = b.op("Gather", [padded, b.data(full, "dct_full")], "U", axis=1)                       # (B, n, 2)
            Wc = b.op("DFT", [U], "W", axis=1, onesided=0)
            re = b.op("Gather", [Wc, b.const(np.asarray(0, np.int64), "zero")], "re", axis=2)   # (B, n)
            x = b.op("Cast", [b.op("Gather", [re, b.data(inv, "dct_inv")], "xpd", axis=1)], "xp", to=1)
            return b.op("Mul", [x, b.data(self.signs, "dct_signs")], "ATr")

        return OnnxForm({}, fwd, adj)




#: The largest factor of n the matrix-product DFT uses (its matrices are N x N).
MATMUL_DFT_MAX = 2048


def dft_factors(n: int) -> tuple[int, int] | None:
    """(N1, N2) with N1 N2 = n, N1 the largest divisor of n at most sqrt(n), both in [2, MATMUL_DFT_MAX]; None
    where n has no such split (a prime, or a large prime factor).

    >>> dft_factors(49152), dft_factors(12288), dft_factors(3072), dft_factors(7919)
    ((192, 256), (96, 128), (48, 64), None)
    """
    d = int(math.isqrt(n))
    while d >= 2 and n % d:
        d -= 1
    if d < 2 or n // d > MATMUL_DFT_MAX:
        return None
    return d, n // d


def _set_cs_shapes(op: Operator, m: int, n: int, image_shape) -> None:
    if image_shape is not None:
        shape = tuple(int(v) for v in image_shape)
        if int(np.prod(shape)) != n:
            raise GSError(f"{op.type} operator: image shape {shape} has {int(np.prod(shape))} values, not n = {n}")
    else:
        shape = (n,)
    op._set_shapes(shape, (m,))


def _shape_field(op: Operator) -> dict:
    return {"in_shape": list(op.in_shape)} if len(op.in_shape) > 1 else {}


def _image_shape(d: dict, n: int):
    shape = in_shape_of(d)
    if int(np.prod(shape)) != n:
        raise GSError(f"operator description: in_shape {list(shape)} does not have n = {n} values")
    return shape if len(shape) > 1 else None


def make_operator(kind: str, m: int, n: int, seed: int, *, stream: bool = False,
                  image_shape=None) -> Operator:
    """A compressed-sensing operator ``gaussian`` (dense, N(0, 1/m)) or ``srdct`` (subsampled DCT) from
    ``(m, n, seed)``; for every operator type use :func:`gs_onnx.physics.make` with an image shape.
    ``stream`` makes a Gaussian A apply itself chunk by chunk without holding the matrix.

    Examples
    --------
    >>> from gs_onnx.physics import make_operator
    >>> A = make_operator("srdct", 100, 12288, seed=0, image_shape=(3, 64, 64))
    >>> A.type, A.m, A.in_shape
    ('srdct', 100, (3, 64, 64))
    """
    if kind == "gaussian":
        return GaussianOperator(m, n, seed, stream=stream, image_shape=image_shape)
    if kind == "srdct":
        return SubsampledDCTOperator(m, n, seed, image_shape=image_shape)
    raise GSError(f"make_operator builds gaussian or srdct from (m, n, seed), not {kind!r}: "
                  "use gs_onnx.physics.make(kind, image_shape, seed, **params)")
