"""Corrupted digits: a CIFAR-10-C / MNIST-C style distribution-shift suite for 8x8 images.

Test-time adaptation methods (Tent, rotation TTT, EATA, SAR) are benchmarked on clean training data
and corrupted test data: CIFAR-10-C (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations") applies 15 corruptions at five severities, and
MNIST-C (Mu & Gilmer, 2019) does the same for handwritten digits with shape-oriented corruptions.
This module translates those ideas to scikit-learn's bundled digits (``load_digits``: 8x8 greyscale,
pixel values 0..16), where the images are so small that every corruption had to be re-designed and
re-calibrated rather than ported: a defocus disk of radius 2 is already five pixels across, most of
a digit's width, and a one-pixel shift moves every stroke onto its neighbour's position.

Inputs are float arrays of shape ``(N, H, W)`` with values in ``[0, 1]`` (``digits.images / 16``).
The five severities are calibrated so that a logistic regression fitted on the first 1000 clean
digits (93% accurate on the other 797) degrades monotonically with severity and keeps roughly 20-70%
accuracy at severity 5 on every evaluation corruption: hard, but the digit is still recognisable.
That reference model is pixel-aligned, so geometric corruptions are calibrated small (a shift of at
most 1.25 pixels); a convolutional network will find them milder than a linear model does.
The parameters assume 8x8 images; other sizes work but are not calibrated.

Rotation is deliberately absent: rotation-prediction TTT uses rotations as its self-supervised
task, so a rotation corruption would tangle the shift with that method's own training signal.

Two disjoint sets of corruptions are exported, following Tent's protocol of tuning
hyper-parameters on CIFAR-10-C's four "extra" corruptions and reporting on the other fifteen:
:data:`EVALUATION_CORRUPTIONS` for reporting and :data:`HELD_OUT_CORRUPTIONS` for tuning only.

Randomness is drawn from ``np.random.default_rng`` seeded with ``(seed, crc32(kind), severity)``,
so a call is reproducible across processes and machines. Each image gets its own draw (its own noise,
shift direction, occluder position...) from one generator that walks the batch in order, so
corrupting image ``i`` alone gives a different result from corrupting it inside a batch. Corrupt a
whole test set in one call, with a fixed seed, to reproduce a benchmark.

The code is written from the papers' descriptions, not from the reference implementations.

>>> x = np.zeros((2, 8, 8), dtype=np.float32)
>>> corrupt(x, "gaussian_noise", 3, seed=0).shape
(2, 8, 8)
>>> len(EVALUATION_CORRUPTIONS) >= 12, set(EVALUATION_CORRUPTIONS).isdisjoint(HELD_OUT_CORRUPTIONS)
(True, True)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import ndimage

from lifelong.core.errors import DataInputError

__all__ = [
    "CORRUPTIONS",
    "EVALUATION_CORRUPTIONS",
    "HELD_OUT_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "corruption_grid",
]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""The five severity levels, mildest first, as in CIFAR-10-C.

>>> SEVERITIES
(1, 2, 3, 4, 5)
"""

_T = TypeVar("_T")
_FAMILIES = ("noise", "blur", "digital", "geometric", "occlusion")
_VALUE_TOLERANCE = 1e-6

# A corruption function receives float64 images (N, H, W) in [0, 1], the severity (1..5) and a
# generator; it may return values outside [0, 1] because corrupt() clips once at the end.
_CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption: its name, family, a one-line description and the function applying it.

    ``fn(images, severity, rng)`` takes float64 images ``(N, H, W)`` in ``[0, 1]`` and may return
    values outside that range; call :func:`corrupt` instead, which validates, seeds and clips.

    >>> c = CORRUPTIONS["shift"]
    >>> (c.name, c.family)
    ('shift', 'geometric')
    """

    name: str
    family: str
    description: str
    fn: _CorruptionFn


# --------------------------------------------------------------------------------------------------
# Severity parameters. Each tuple holds the values for severities 1..5; they were chosen with the
# logistic-regression calibration described in the module docstring (see the tests for the check).
# --------------------------------------------------------------------------------------------------

_GAUSSIAN_NOISE_STD = (0.1, 0.2, 0.3, 0.4, 0.5)
_SHOT_NOISE_PHOTONS = (24.0, 12.0, 6.0, 3.0, 1.5)  # expected photon count of a white pixel
_IMPULSE_NOISE_FRACTION = (0.04, 0.08, 0.14, 0.22, 0.32)
_SPECKLE_NOISE_STD = (0.2, 0.4, 0.6, 0.9, 1.2)
_FOG_STRENGTH = (0.3, 0.6, 0.9, 1.2, 1.6)
_DEFOCUS_RADIUS = (0.6, 0.9, 1.2, 1.5, 1.9)
_GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.8, 1.0, 1.2)
_MOTION_LENGTH = (1.0, 1.8, 2.6, 3.4, 4.4)
_ZOOM_MAX = (1.2, 1.4, 1.7, 2.0, 2.4)  # largest magnification averaged in
_GLASS = ((0.3, 0.15), (0.4, 0.3), (0.5, 0.45), (0.6, 0.6), (0.7, 0.8))  # (pre-blur sigma, P(pixel hops))
_CONTRAST_FACTOR = (0.5, 0.35, 0.25, 0.16, 0.1)
_BRIGHTNESS_OFFSET = (0.15, 0.3, 0.45, 0.6, 0.75)
_GAMMA = (1.5, 2.5, 4.0, 6.0, 8.0)
_PIXELATE_GRID = (7, 6, 5, 4, 3)  # coarse grid side for an 8x8 image
_QUANTIZATION_STEP = (0.25, 0.4, 0.6, 0.8, 0.9)  # width of one grey level
_ELASTIC_RMS = (0.3, 0.5, 0.7, 0.95, 1.25)  # RMS displacement in pixels
_ELASTIC_SMOOTHING = 1.2
_SHIFT_PIXELS = (0.25, 0.5, 0.75, 1.0, 1.25)
_OCCLUSION_SIZE = ((2, 3), (3, 3), (3, 4), (4, 4), (4, 5))  # (short, long) side of the rectangle
_SPATTER_FRACTION = (0.06, 0.12, 0.18, 0.25, 0.33)


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _level(params: Sequence[_T], severity: int) -> _T:
    return params[severity - 1]


def _warp(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample image i at coordinates (rows[i], cols[i]), bilinearly, with black outside the image."""
    rows, cols = np.broadcast_to(rows, images.shape), np.broadcast_to(cols, images.shape)
    # One 3-D interpolation over the whole batch: integer coordinates on the image axis make the
    # interpolation along it exact, so images never bleed into each other.
    index = np.broadcast_to(np.arange(len(images), dtype=np.float64)[:, None, None], images.shape)
    return ndimage.map_coordinates(images, [index, rows, cols], order=1, mode="constant", cval=0.0)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")


def _disk_kernel(radius: float) -> np.ndarray:
    """A normalised disk whose edge pixels are weighted by covered area, so radius acts continuously."""
    half = int(np.ceil(radius))
    sub = 16  # sub-samples per pixel side: enough for a smooth area estimate at this size
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    coords = np.arange(-half, half + 1, dtype=np.float64)
    fine = (coords[:, None] + offsets[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, sub, size, sub).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Per-image low-frequency random fields, standardised to zero mean and unit RMS per image."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0, sigma, sigma), mode="wrap")
    field -= field.mean(axis=(1, 2), keepdims=True)
    rms = np.sqrt((field**2).mean(axis=(1, 2), keepdims=True))
    return field / np.maximum(rms, 1e-12)


def _area_resample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Row i averages the input pixels overlapped by output cell i, weighted by overlap length."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(ends, pixel + 1) - np.maximum(starts, pixel), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _box_resize_round_trip(n: int, coarse: int) -> np.ndarray:
    """The (n, n) operator that box-downsamples n pixels to ``coarse`` cells and back up.

    Upsampling is also by area (each fine pixel averages the cells it overlaps), which equals
    nearest-neighbour block copying when ``n`` is a multiple of ``coarse``. Nearest-neighbour
    upsampling at ratios like 8/6 was tried first: it misplaces cell borders, so a finer grid could
    change the image more than a coarser one and severities stopped being ordered.
    """
    down = _area_resample_matrix(coarse, n)
    up = down.T / down.T.sum(axis=1, keepdims=True)
    return up @ down


# --------------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------------


def _gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, _level(_GAUSSIAN_NOISE_STD, severity), size=x.shape)


def _shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = _level(_SHOT_NOISE_PHOTONS, severity)
    # A dim sensor floor keeps the black background noisy too; pure Poisson noise would leave
    # every zero pixel exactly zero, which on digits (mostly background) is barely a corruption.
    floor = 0.08
    return rng.poisson((x + floor) * photons) / photons - floor


def _impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < _level(_IMPULSE_NOISE_FRACTION, severity)
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), x)


def _speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + x * rng.normal(0.0, _level(_SPECKLE_NOISE_STD, severity), size=x.shape)


def _fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength = _level(_FOG_STRENGTH, severity)
    haze = _smooth_field(rng, x.shape, sigma=2.0)
    low, span = haze.min(axis=(1, 2), keepdims=True), np.ptp(haze, axis=(1, 2), keepdims=True)
    haze = (haze - low) / np.maximum(span, 1e-12)
    # Like real fog, the haze both adds light and washes out the scene's own contrast.
    return (x + strength * haze) / (1.0 + 0.5 * strength)


# --------------------------------------------------------------------------------------------------
# Blur
# --------------------------------------------------------------------------------------------------


def _defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    kernel = _disk_kernel(_level(_DEFOCUS_RADIUS, severity))
    return ndimage.convolve(x, kernel[None], mode="constant", cval=0.0)


def _gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _level(_GAUSSIAN_BLUR_SIGMA, severity)
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant", cval=0.0)


def _motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _, height, width = x.shape
    rows, cols = _grid(height, width)
    length = _level(_MOTION_LENGTH, severity)
    angle = rng.uniform(0.0, np.pi, size=(len(x), 1, 1))
    # Averaging bilinear copies displaced along the segment is a line-kernel convolution with a
    # different direction per image, done for the whole batch at once; samples <= 0.5 px apart.
    offsets = np.linspace(-length / 2, length / 2, 2 * int(np.ceil(length)) + 1)
    copies = [_warp(x, rows + t * np.sin(angle), cols + t * np.cos(angle)) for t in offsets]
    return np.mean(copies, axis=0)


def _zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _, height, width = x.shape
    rows, cols = _grid(height, width)
    centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
    zooms = np.linspace(1.0, _level(_ZOOM_MAX, severity), 6)
    acc = np.zeros_like(x)
    for z in zooms:
        # Sampling closer to the centre magnifies the digit about the centre by a factor z.
        acc += _warp(x, centre_r + (rows - centre_r) / z, centre_c + (cols - centre_c) / z)
    return acc / len(zooms)


def _glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma, hop_probability = _level(_GLASS, severity)
    n, height, width = x.shape
    blurred = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant", cval=0.0)
    # Frosted glass: a pixel shows one of its 8 neighbours instead of itself, so strokes crumble
    # into grain. Hops are limited to one pixel because a digit stroke is only one or two wide.
    rows, cols = _grid(height, width)
    hops = rng.random(x.shape) < hop_probability
    dr = np.where(hops, rng.integers(-1, 2, size=x.shape), 0)
    dc = np.where(hops, rng.integers(-1, 2, size=x.shape), 0)
    src_r = np.clip(rows[None] + dr, 0, height - 1).astype(int)
    src_c = np.clip(cols[None] + dc, 0, width - 1).astype(int)
    return blurred[np.arange(n)[:, None, None], src_r, src_c]


# --------------------------------------------------------------------------------------------------
# Digital
# --------------------------------------------------------------------------------------------------


def _contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + _level(_CONTRAST_FACTOR, severity) * (x - mean)


def _brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # The offset alone would mostly shift every class score alike; it is the clipping to white in
    # corrupt() that erases the stroke/background difference, as over-exposure does.
    return x + _level(_BRIGHTNESS_OFFSET, severity)


def _gamma(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # Stands in for CIFAR-10-C's "saturate", which has no meaning without colour; over-driving the
    # tone curve around mid-grey was tried first but barely hurts near-binary digits.
    return x ** _level(_GAMMA, severity)


def _pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _, height, width = x.shape
    grid = _level(_PIXELATE_GRID, severity)
    along_rows = _box_resize_round_trip(height, max(1, round(grid * height / 8)))
    along_cols = _box_resize_round_trip(width, max(1, round(grid * width / 8)))
    return along_rows @ x @ along_cols.T


def _quantization(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    step = _level(_QUANTIZATION_STEP, severity)
    # A truncating quantiser (posterisation drops low bits the same way) with a step that need not
    # divide 1: at the top severities only near-saturated ink survives. Rounding to 2-4 evenly
    # spaced levels, with or without dither, barely hurts digits, which are nearly binary already.
    # The small epsilon keeps exact multiples of the step (e.g. 0.8 / 0.4) from flooring down.
    return step * np.floor(x / step + 1e-9)


# --------------------------------------------------------------------------------------------------
# Geometric
# --------------------------------------------------------------------------------------------------


def _elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _, height, width = x.shape
    rows, cols = _grid(height, width)
    amplitude = _level(_ELASTIC_RMS, severity)
    dr = _smooth_field(rng, x.shape, _ELASTIC_SMOOTHING)
    dc = _smooth_field(rng, x.shape, _ELASTIC_SMOOTHING)
    # Scale the pair jointly so the amplitude is the RMS length of the 2-D displacement vector.
    scale = amplitude / np.maximum(np.sqrt((dr**2 + dc**2).mean(axis=(1, 2), keepdims=True)), 1e-12)
    return _warp(x, rows + scale * dr, cols + scale * dc)


def _shift(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    _, height, width = x.shape
    rows, cols = _grid(height, width)
    distance = _level(_SHIFT_PIXELS, severity)
    angle = rng.uniform(0.0, 2 * np.pi, size=(len(x), 1, 1))
    # Sampling at p - d moves the content by +d; bilinear sampling makes sub-pixel shifts possible.
    return _warp(x, rows - distance * np.sin(angle), cols - distance * np.cos(angle))


# --------------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------------


def _occlusion(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    n, height, width = x.shape
    short, long = _level(_OCCLUSION_SIZE, severity)
    # Rectangles rather than squares give five distinct areas between 2x3 and 4x5 pixels; squares
    # jump from 9 to 16 to 25 pixels, too coarse a ladder for an 8x8 image.
    upright = rng.random(n) < 0.5
    tall = np.minimum(np.where(upright, long, short), height)
    wide = np.minimum(np.where(upright, short, long), width)
    top = (rng.random(n) * (height - tall + 1)).astype(int)
    left = (rng.random(n) * (width - wide + 1)).astype(int)
    colour = rng.integers(0, 2, size=n).astype(np.float64)  # black or white, as either hides ink
    rows, cols = _grid(height, width)
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + tall)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + wide)[:, None, None])
    )
    return np.where(inside, colour[:, None, None], x)


def _spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    fraction = _level(_SPATTER_FRACTION, severity)
    field = _smooth_field(rng, x.shape, sigma=0.8)
    # Thresholding a smooth field at its per-image quantile gives blobs of a known total area.
    threshold = np.quantile(field, 1.0 - fraction, axis=(1, 2), keepdims=True)
    drops = np.clip((field - threshold) * 4.0, 0.0, 1.0)
    ink = rng.uniform(0.6, 1.0, size=(len(x), 1, 1))
    return (1.0 - drops) * x + drops * ink


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _registry(*entries: tuple[str, str, str, _CorruptionFn]) -> dict[str, Corruption]:
    registry = {}
    for name, family, description, fn in entries:
        assert family in _FAMILIES, family
        registry[name] = Corruption(name=name, family=family, description=description, fn=fn)
    return registry


CORRUPTIONS: dict[str, Corruption] = _registry(
    ("gaussian_noise", "noise", "additive Gaussian noise on every pixel", _gaussian_noise),
    ("shot_noise", "noise", "Poisson photon-count noise with a dim sensor floor", _shot_noise),
    ("impulse_noise", "noise", "salt-and-pepper: some pixels set to black or white", _impulse_noise),
    ("fog", "noise", "low-frequency haze added while the digit's own contrast fades", _fog),
    ("defocus_blur", "blur", "convolution with an anti-aliased disk (out-of-focus lens)", _defocus_blur),
    ("motion_blur", "blur", "convolution with a line segment at a random angle per image", _motion_blur),
    ("zoom_blur", "blur", "average of progressively magnified copies about the centre", _zoom_blur),
    ("glass_blur", "blur", "slight blur, then pixels replaced by a random neighbour", _glass_blur),
    ("contrast", "digital", "pixel values pulled hard toward the image mean", _contrast),
    ("brightness", "digital", "a large constant added to every pixel, clipping to white", _brightness),
    ("pixelate", "digital", "box-filter downsampling to a coarser grid and back up", _pixelate),
    ("quantization", "digital", "posterisation: truncation to grey levels of growing step", _quantization),
    ("elastic_transform", "geometric", "warp by a smooth random displacement field", _elastic_transform),
    ("shift", "geometric", "sub-pixel translation in a random direction, black fill", _shift),
    ("occlusion", "occlusion", "a black or white rectangle of growing area at a random position", _occlusion),
    ("speckle_noise", "noise", "multiplicative Gaussian noise (only where there is ink)", _speckle_noise),
    ("gaussian_blur", "blur", "isotropic Gaussian blur", _gaussian_blur),
    ("spatter", "occlusion", "bright smooth-edged blobs of ink splashed at random", _spatter),
    ("gamma", "digital", "power-law tone curve that darkens faint and mid-grey strokes", _gamma),
)
"""Every corruption by name, as :class:`Corruption` records.

>>> sorted({c.family for c in CORRUPTIONS.values()})
['blur', 'digital', 'geometric', 'noise', 'occlusion']
>>> CORRUPTIONS["pixelate"].description
'box-filter downsampling to a coarser grid and back up'
"""

EVALUATION_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "fog",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "glass_blur",
    "contrast",
    "brightness",
    "pixelate",
    "quantization",
    "elastic_transform",
    "shift",
    "occlusion",
)
"""The corruptions results are reported on (the analogue of CIFAR-10-C's fifteen).

>>> len(EVALUATION_CORRUPTIONS)
15
"""

HELD_OUT_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "gamma")
"""Corruptions reserved for tuning hyper-parameters, never for reporting (Tent's "extra" four).

``gamma`` replaces CIFAR-10-C's ``saturate``, which needs colour.

>>> HELD_OUT_CORRUPTIONS
('speckle_noise', 'gaussian_blur', 'spatter', 'gamma')
"""


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def _check_kind(kind: object) -> Corruption:
    if not isinstance(kind, str) or kind not in CORRUPTIONS:
        raise DataInputError(
            f"unknown corruption kind {kind!r}; valid kinds are: {', '.join(sorted(CORRUPTIONS))}"
        )
    return CORRUPTIONS[kind]


def _check_severity(severity: object) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or not 1 <= severity <= 5:
        raise DataInputError(
            f"severity must be an int in 1..5, got {severity!r}; pass one of {SEVERITIES}"
        )
    return int(severity)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataInputError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_images(images: object) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim != 3:
        hint = "; pass images[None] for a single image" if array.ndim == 2 else ""
        raise DataInputError(f"images must be a 3-D array (N, H, W), got shape {array.shape}{hint}")
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise DataInputError(
            f"images must be a real numeric array, got dtype {array.dtype}; convert with .astype(np.float32)"
        )
    as_float = array.astype(np.float64)  # a copy, so the caller's array is never written to
    if not np.all(np.isfinite(as_float)):
        raise DataInputError("images contain NaN or Inf values; clean or drop those images first")
    if as_float.size and (as_float.min() < -_VALUE_TOLERANCE or as_float.max() > 1.0 + _VALUE_TOLERANCE):
        raise DataInputError(
            f"image values must lie in [0, 1], got range [{as_float.min():g}, {as_float.max():g}]; "
            "divide sklearn digits (0..16) by 16"
        )
    return np.clip(as_float, 0.0, 1.0)


def _rng(seed: int, kind: str, severity: int) -> np.random.Generator:
    # crc32, unlike hash(), is the same in every process, so seeds reproduce across runs.
    return np.random.default_rng([seed, zlib.crc32(kind.encode("utf-8")), severity])


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Return a corrupted float32 copy of ``images`` (N, H, W) in ``[0, 1]``; the input is untouched.

    ``kind`` is a key of :data:`CORRUPTIONS`, ``severity`` an int in 1..5. The result depends only
    on ``(images, kind, severity, seed)``. Each image gets its own random draw from one generator
    walking the batch, so an image corrupted alone differs from the same image corrupted in a batch.

    >>> x = np.zeros((2, 8, 8), dtype=np.float32)
    >>> corrupt(x, "gaussian_noise", 3, seed=0).shape
    (2, 8, 8)
    >>> y = corrupt(x, "occlusion", 5, seed=1)
    >>> y.dtype, bool(y.min() >= 0.0 and y.max() <= 1.0)
    (dtype('float32'), True)
    >>> np.array_equal(corrupt(x, "shift", 2, seed=7), corrupt(x, "shift", 2, seed=7))
    True
    """
    corruption = _check_kind(kind)
    severity = _check_severity(severity)
    seed = _check_seed(seed)
    x = _check_images(images)
    if x.size == 0:  # nothing to corrupt, and some per-image statistics are undefined on no images
        return x.astype(np.float32)
    out = corruption.fn(x, severity, _rng(seed, corruption.name, severity))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def corruption_grid(
    images: np.ndarray, kinds: Sequence[str], severities: Sequence[int] = SEVERITIES, seed: int = 0
) -> np.ndarray:
    """Stack :func:`corrupt` over kinds and severities: shape ``(len(kinds), len(severities), N, H, W)``.

    Entry ``[k, s]`` equals ``corrupt(images, kinds[k], severities[s], seed)``, handy for plotting
    a kind-by-severity panel of examples.

    >>> x = np.zeros((3, 8, 8), dtype=np.float32)
    >>> corruption_grid(x, ["contrast", "shift"], severities=(1, 5)).shape
    (2, 2, 3, 8, 8)
    """
    if isinstance(kinds, str):
        raise DataInputError(
            f"kinds must be a sequence of names, got the string {kinds!r}; pass [{kinds!r}]"
        )
    # Check every argument before the first corruption, so a typo fails fast, not mid-grid.
    for kind in kinds:
        _check_kind(kind)
    for severity in severities:
        _check_severity(severity)
    array = np.asarray(images)
    n, height, width = _check_images(array).shape
    grid = np.empty((len(kinds), len(severities), n, height, width), dtype=np.float32)
    for k, kind in enumerate(kinds):
        for s, severity in enumerate(severities):
            grid[k, s] = corrupt(array, kind, severity, seed=seed)
    return grid
