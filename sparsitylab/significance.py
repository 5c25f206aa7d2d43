"""Is one model better than another? Intervals that a reviewer accepts.

Two sources of noise separate two measured accuracies, and one interval covers each:

- **the test set** — two models scored on the *same* images are paired: most images both get
  right, and only the images they disagree on carry information. :func:`mcnemar` tests the
  disagreements (the exact binomial form of McNemar's test); :func:`paired_bootstrap` gives an
  interval for the accuracy difference by resampling images (the same images for both models).
  The binomial standard error of one accuracy, √(p(1−p)/n) (:func:`standard_error`), ignores the
  pairing and overstates this noise for similar models.
- **the training seed** — a different initialisation and data order move a trained model's
  accuracy far more than the test set's sampling does (chapter 8 measures seed spreads of several
  points for some methods). :func:`seed_interval` is the Student-t interval of a mean over seeds,
  and of the mean *difference* over seeds when two methods were trained with the same seeds
  (paired by seed: the same initialisation and data order).

The book's rule: a claim that A is better than B needs the interval of A − B to exclude 0; with
3 seeds the t-interval is wide (t = 4.30), and "no resolved difference" is then the honest reading.

:func:`pack_correct` / :func:`unpack_correct` store a run's per-example correctness compactly
(one bit per test image, hex) so result files can be compared pair by pair later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ._checks import check_int, check_real


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval; ``excludes_zero`` is the test of "better".

    estimate, low, high: in the units of the compared values (accuracy fractions, not points).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    samples: int  # images (bootstrap) or seeds (t-interval)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def points(self, digits: int = 1) -> str:
        """``+0.4 [−0.3, +1.1]`` in percentage points."""
        e, lo, hi = (100 * v for v in (self.estimate, self.low, self.high))
        return f"{e:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


@dataclass(frozen=True)
class McNemar:
    """Disagreements of two models on the same images and the exact two-sided p-value that they
    split evenly (no difference)."""

    only_a: int  # images A gets right and B wrong
    only_b: int
    p_value: float


def standard_error(accuracy: float, samples: int) -> float:
    """The binomial standard error √(p(1 − p)/n) of one accuracy measured on ``samples`` test
    images: the noise of one test-set measurement (unpaired, one model, one seed)."""
    return math.sqrt(accuracy * (1 - accuracy) / samples)


def _check_confidence(confidence: float) -> float:
    confidence = check_real(confidence, "confidence", 0.0, 1.0, open_max=True)
    if confidence == 0:
        raise ValueError("confidence=0.0 must lie strictly between 0 and 1")
    return confidence


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.bool or t.dim() != 1:
            raise TypeError(f"{name} must be a 1-D bool tensor of per-image correctness, got {t!r}")
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(
            "a and b must score the same non-empty test set, "
            f"got {a.numel()} and {b.numel()} images"
        )
    return a, b


def mcnemar(a: torch.Tensor, b: torch.Tensor) -> McNemar:
    """McNemar's exact test: of the images exactly one model gets right, does each model win half?
    ``a``, ``b``: per-image correctness (bool) on the same images, in the same order."""
    a, b = _check_pair(a, b)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else stats.binomtest(only_a, discordant, 0.5).pvalue
    return McNemar(only_a, only_b, float(p))


def paired_bootstrap(
    a: torch.Tensor,
    b: torch.Tensor,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of accuracy(a) − accuracy(b), resampling images (both models
    on the same resampled images). Each image contributes −1, 0 or +1 to the difference, so a
    resample is one multinomial draw over those three counts: vectorised, exact in distribution."""
    a, b = _check_pair(a, b)
    check_int(resamples, "resamples", 1)
    confidence = _check_confidence(confidence)
    diff = a.to(torch.int8) - b.to(torch.int8)
    n = diff.numel()
    counts = np.array([int((diff == v).sum()) for v in (-1, 0, 1)])
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    means = (draws[:, 2] - draws[:, 0]) / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.float().mean()), float(low), float(high), confidence, n)


def seed_interval(
    values: Sequence[float], baseline: Sequence[float] | None = None, confidence: float = 0.95
) -> Interval:
    """Student-t interval of the mean of ``values`` over seeds; with ``baseline`` (one value per
    seed, the same seeds in the same order), of the mean paired difference ``values − baseline``.
    One seed gives no interval (ValueError): a spread needs two."""
    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    if baseline is not None:
        y = np.asarray(baseline, dtype=float)
        if y.shape != x.shape:
            raise ValueError(
                f"baseline has {y.size} seeds but values has {x.size}: pair them seed by seed"
            )
        x = x - y
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"values needs at least 2 seeds for an interval, got {x.size}")
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sem
    return Interval(mean, mean - half, mean + half, confidence, int(x.size))


def pack_correct(correct: torch.Tensor) -> str:
    """Per-image correctness as a hex string, one bit per image (5 000 images: 1 250 characters)."""
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool or correct.dim() != 1:
        raise TypeError(f"correct must be a 1-D bool tensor, got {correct!r}")
    return np.packbits(correct.numpy()).tobytes().hex()


def unpack_correct(packed: str, images: int) -> torch.Tensor:
    """The inverse of :func:`pack_correct` for a test set of ``images`` images."""
    check_int(images, "images", 1)
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(packed), dtype=np.uint8))
    if not images <= bits.size < images + 8:
        raise ValueError(f"packed holds {bits.size} bits, which cannot encode {images} images")
    return torch.from_numpy(bits[:images].astype(bool))


__all__ = [
    "Interval",
    "McNemar",
    "mcnemar",
    "pack_correct",
    "paired_bootstrap",
    "seed_interval",
    "standard_error",
    "unpack_correct",
]
