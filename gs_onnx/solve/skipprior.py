"""A prior on a cut's skip source, so that recovery does not draw the generator's lattice.

BEGAN's skip source ``h1`` (8 x 8) is nearest-upsampled into every later block. Surgery at c >= 2 frees it,
the optimiser pushes it off the values the generator was trained on, and its cells show as light lines every
16 px of the 128 px image (:func:`gs_onnx.metrics.seam`: 1.6 on recovered faces against 1.0 for the truth).
:class:`SkipPrior` adds to the objective a Gaussian term fitted to the generator's own activations,

    weight * mean_{c, i} ((h_{c,i} - mu_c) / sd_c)^2        (per restart row; mu, sd per channel)

with ``mu`` and ``sd`` measured on ``samples`` latents drawn from the model's prior (fixed seed: the same
numbers on every machine). It leaves the measurement error, the held-out error and the winner's choice
untouched (they read the data term only). :func:`with_skip_prior` wraps any GS-like objective.
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError

#: Latents drawn from the model's prior to measure the skip source's statistics.
SAMPLES = 512


def skip_sources(man, cut: int) -> list[str]:
    """The inputs of the cut generator at ``cut`` that more than one block reads (the skip sources it frees)."""
    readers: dict[str, int] = {}
    for b in man.blocks[cut:]:
        for name in b.inputs:
            readers[name] = readers.get(name, 0) + 1
    return [name for name in man.cut(cut).inputs if readers.get(name, 0) > 1]


def _prior_samples(man, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(man.tensors[man.latent])
    if man.latent_prior == "uniform":
        z = rng.uniform(-1.0, 1.0, (n, *shape))
    else:
        z = rng.standard_normal((n, *shape))
        if man.latent_prior == "clipped_normal":
            z = np.clip(z, -1.0, 1.0)
    return z.astype(np.float32)


class SkipPrior:
    """The Gaussian term on the skip sources of a cut, fitted to the generator's own activations.

    Parameters
    ----------
    man : the model's :class:`gs_onnx.generator.manifest.Manifest`
    cut : the cut; its skip-source inputs (:func:`skip_sources`) are the ones penalised
    weight : the term's weight against the data term ``||A G(z) - y||^2 / m``
    device, threads : where the head blocks run to measure the statistics (once)

    Examples
    --------
    >>> import numpy as np
    >>> from gs_onnx import load_model
    >>> from gs_onnx.generator.latent import LatentLayout
    >>> man = load_model("began")
    >>> prior = SkipPrior(man, 2, weight=1e-3, device="cpu")
    >>> prior.names, prior.mean["h1"].shape
    (['h1'], (128,))
    >>> layout = LatentLayout({"h2": (128, 16, 16), "h1": (128, 8, 8)})
    >>> Z = layout.pack({"h2": np.zeros((1, 128, 16, 16)), "h1": prior.mean["h1"][None, :, None, None]
    ...                  * np.ones((1, 128, 8, 8))})
    >>> p, g = prior.penalty(Z, layout)
    >>> float(p[0]), float(abs(g).max())           # at the mean: no penalty, no pull
    (0.0, 0.0)
    """

    def __init__(self, man, cut: int, weight: float, device: str = "cpu", threads: int = 0, samples: int = SAMPLES):
        from ..engine.block import Block, run_chain

        if not (isinstance(weight, (int, float)) and np.isfinite(weight) and weight >= 0):
            raise GSError(f"--skip-prior must be a number >= 0, got {weight!r}")
        self.weight, self.names = float(weight), skip_sources(man, cut)
        self.mean: dict[str, np.ndarray] = {}
        self.std: dict[str, np.ndarray] = {}
        if not self.names or self.weight == 0:
            return
        producers = [max(b.index for b in man.blocks if name in b.outputs) for name in self.names]
        blocks = [Block(man, man.blocks[k], device, threads) for k in range(max(producers) + 1)]
        env = run_chain(blocks, {man.latent: _prior_samples(man, samples, np.random.default_rng(0))})
        for name in self.names:
            h = np.asarray(env[name], dtype=np.float64)
            axes = (0,) + tuple(range(2, h.ndim))
            self.mean[name] = h.mean(axis=axes)
            self.std[name] = np.maximum(h.std(axis=axes), 1e-6)

    @property
    def active(self) -> bool:
        return bool(self.mean)

    def penalty(self, Z: np.ndarray, layout) -> tuple[np.ndarray, np.ndarray]:
        """The term (B,) float64 and its gradient (B, size) float64 at packed latents ``Z`` (B, size)."""
        Z = np.atleast_2d(np.asarray(Z, dtype=np.float64))
        p = np.zeros(len(Z))
        g = np.zeros_like(Z)
        start = 0
        for name in layout.names:
            k = layout.sizes[name]
            if name in self.mean:
                c = layout.shapes[name][0]
                mu, sd = self.mean[name][None, :, None], self.std[name][None, :, None]
                d = (Z[:, start:start + k].reshape(len(Z), c, -1) - mu) / sd
                p += self.weight * (d * d).sum(axis=(1, 2)) / k
                g[:, start:start + k] = (self.weight * 2.0 / k * d / sd).reshape(len(Z), k)
            start += k
        return p, g

    def describe(self) -> dict:
        return {"weight": self.weight, "inputs": self.names, "samples": SAMPLES}


class _WithSkipPrior:
    """A GS-like objective plus the skip prior; everything else (images, errors, held-out) is the objective's."""

    def __init__(self, obj, prior: SkipPrior):
        self._obj, self._prior = obj, prior

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def with_measurements(self, y, w=None):
        return _WithSkipPrior(self._obj.with_measurements(y, w), self._prior)

    def value_and_grad(self, z):
        f, g = self._obj.value_and_grad(z)
        p, gp = self._prior.penalty(z, self._obj.layout)
        return float(f) + float(p[0]), np.asarray(g, dtype=np.float64) + gp[0]



class _WithSkipPriorBatched(_WithSkipPrior):
    """The same for an objective that evaluates many rows at once."""

    def with_measurements(self, y, w=None):
        return _WithSkipPriorBatched(self._obj.with_measurements(y, w), self._prior)

    def value_and_grad_batch(self, Z, *args, **kwargs):
        f, g = self._obj.value_and_grad_batch(Z, *args, **kwargs)
        p, gp = self._prior.penalty(Z, self._obj.layout)
        return np.asarray(f, dtype=np.float64) + p, np.asarray(g, dtype=np.float64) + gp


def prior_for(man, cut: int, weight: float | str | None = "auto", device: str = "cpu", threads: int = 0):
    """The skip prior a recovery at ``cut`` runs: ``weight="auto"`` (or None) is the model's recommended weight
    (``recommended.skip_prior.weight`` in its manifest, else 0), a number that weight (0: off). None where the
    cut frees no skip source or the weight is 0."""
    if weight is None or weight == "auto":
        weight = float((man.recommended.get("skip_prior") or {}).get("weight", 0.0))
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise GSError(f"skip_prior must be 'auto' or a number >= 0, got {weight!r}")
    if weight == 0 or not skip_sources(man, cut):
        return None
    key = (str(man.root), cut, float(weight))
    if key not in _MADE:  # the statistics are the same for every recovery with this model and cut: measure once
        _MADE[key] = SkipPrior(man, cut, float(weight), device=device, threads=threads)
    return _MADE[key]


#: The priors made so far in this process, by (model folder, cut, weight).
_MADE: dict[tuple, SkipPrior] = {}


def with_skip_prior(objective, prior: SkipPrior | None):
    """``objective`` with the prior's term added (``objective`` itself where the prior is None or inactive)."""
    if prior is None or not prior.active:
        return objective
    return (_WithSkipPriorBatched if hasattr(objective, "value_and_grad_batch") else _WithSkipPrior)(objective, prior)
