"""Latent vectors: seeds, priors, truncation and interpolation, with numpy alone.

A seed names one latent on any machine::

    rng = numpy.random.default_rng(seed)
    z = rng.standard_normal(dim, dtype=numpy.float32)                  # prior "normal"
    z = rng.uniform(-sqrt(3), sqrt(3), dim).astype(numpy.float32)      # prior "uniform"

Image i of a request with seed s uses seed s + i, so a seed names one image whatever the
batch it was drawn in. Truncation (see ``truncate``) draws from a second generator derived
from the same seed, so it keeps that property.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

Prior = Literal["normal", "uniform"]

# Seeds are non-negative and fit a signed 64-bit integer (JSON clients, numpy, SQL all agree).
MAX_SEED = 2**63 - 1
_UNIFORM_BOUND = math.sqrt(3.0)  # U(-sqrt 3, sqrt 3) has unit variance, like the normal prior
# Angles below this make sin(omega) too small to divide by; slerp then equals lerp anyway.
_SLERP_MIN_SIN = 1e-6


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is out of range; seeds are integers in [0, 2**63 - 1]")


def _draw(rng: np.random.Generator, n: int, prior: Prior) -> np.ndarray:
    if prior == "normal":
        return rng.standard_normal(n, dtype=np.float32)
    if prior == "uniform":
        return rng.uniform(-_UNIFORM_BOUND, _UNIFORM_BOUND, n).astype(np.float32)
    raise ValueError(f"unknown prior {prior!r}; expected 'normal' or 'uniform'")


def latent_for_seed(seed: int, dim: int, prior: Prior) -> np.ndarray:
    """Return the latent that ``seed`` names: float32 [dim], drawn as the module docstring says."""
    return latents([seed], dim, prior)[0]


def request_seeds(n: int, seed: int | None = None, seeds: list[int] | None = None) -> list[int]:
    """Return the n seeds a request samples with.

    ``seeds`` is used as given (it must hold n seeds); ``seed`` s gives s, s+1, ..., s+n-1;
    with neither, a fresh random base seed is drawn so the response can report seeds that
    reproduce every image.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed is not None and seeds is not None:
        raise ValueError("give seed or seeds, not both")
    if seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"seeds has {len(seeds)} entries but n is {n}")
        result = list(seeds)
    else:
        base = secrets.randbelow(2**31) if seed is None else seed
        result = list(range(base, base + n))
    for s in result:
        _check_seed(s)
    return result


def truncate(z: np.ndarray, threshold: float, prior: Prior, seed: int) -> np.ndarray:
    """Apply the truncation trick by resampling (BigGAN, Brock et al. 2018) to one latent.

    Exactly, for a float32 latent ``z`` [dim] drawn from ``seed``::

        rng = numpy.random.default_rng([seed, 1])
        out = (abs(z.astype(numpy.float64)) > threshold)      # compared in float64
        while out.any():
            z[out] = <out.sum() fresh draws from the prior, as in the module docstring, from rng>
            out = (abs(z.astype(numpy.float64)) > threshold)

    Fresh draws fill the out-of-range components in index order. The result depends only on
    ``z``, ``threshold``, ``prior`` and ``seed``, never on the rest of a batch. With the uniform
    prior, a threshold >= sqrt(3) changes nothing and returns ``z`` as is. Smaller thresholds
    cost more rounds: roughly log(dim) / P(|z| <= threshold) of them.
    """
    if not threshold > 0:
        raise ValueError(f"truncation threshold must be > 0, got {threshold}")
    _check_seed(seed)
    if prior == "uniform" and threshold >= _UNIFORM_BOUND:
        return z
    rng = np.random.default_rng([seed, 1])
    result = np.array(z, dtype=np.float32)
    out = np.flatnonzero(np.abs(result.astype(np.float64)) > threshold)
    while out.size:
        result[out] = _draw(rng, out.size, prior)
        out = out[np.abs(result[out].astype(np.float64)) > threshold]
    return result


def latents(
    seeds: Sequence[int],
    dim: int,
    prior: Prior,
    truncation: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Return float32 [N, dim]: row i is the latent of ``seeds[i]``, truncated when asked.

    ``truncation`` is one threshold for every row, or one per row.
    """
    for s in seeds:
        _check_seed(s)
    if dim < 1:
        raise ValueError(f"latent dim must be >= 1, got {dim}")
    states = _pcg64_states(seeds) if len(seeds) >= _VECTOR_HASH_FROM else map(_pcg64_state, seeds)
    bits, rng = _generator()
    out = np.empty((len(seeds), dim), dtype=np.float32)
    for i, (state, inc) in enumerate(states):
        bits.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,  # no half of a 64-bit draw buffered: a fresh generator
            "uinteger": 0,
        }
        out[i] = _draw(rng, dim, prior)
    if truncation is not None:
        if isinstance(truncation, float | int):
            truncation = [truncation] * len(seeds)
        for i, (seed, threshold) in enumerate(zip(seeds, truncation, strict=True)):
            out[i] = truncate(out[i], threshold, prior, seed)
    return out


def _generator() -> tuple[np.random.PCG64, np.random.Generator]:
    """This thread's generator, reseeded per latent: building one runs numpy's seeding again."""
    try:
        return _local.generator
    except AttributeError:
        bits = np.random.PCG64(0)
        _local.generator = bits, np.random.Generator(bits)
        return _local.generator


_local = threading.local()

# default_rng(seed) is numpy's SeedSequence hash of the seed into a PCG64 state, which latents()
# sets on one generator per thread rather than building a generator per seed (~8 us each). The
# hash runs here: in Python ints per seed (~6 us), or as uint32 array arithmetic from 16 seeds
# on (~100 us, almost all of it fixed cost), bit-identical either way (tests compare it with
# default_rng). The constants and steps are those of numpy/random/bit_generator.pyx
# (SeedSequence, frozen by NEP 19) and pcg64.c (srandom).
_VECTOR_HASH_FROM = 16
_M32, _M128 = 0xFFFFFFFF, (1 << 128) - 1
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341


def _hash_consts(init: int, mult: int, count: int) -> list[tuple[int, int]]:
    """(xor, multiplier) of each hash call: the hash constant advances the same for any seed."""
    out = []
    for _ in range(count):
        out.append((init, init * mult & _M32))
        init = init * mult & _M32
    return out


_HASHMIX = _hash_consts(_INIT_A, _MULT_A, 4 + 4 * 3)  # entropy into the pool, then pool mixing
_GENERATE = _hash_consts(_INIT_B, _MULT_B, 8)  # generate_state(4, uint64): 8 uint32 words
# Pool mixing order: every (source, destination) pair of the 4 words but a word with itself.
_MIX_ORDER = [(src, dst) for src in range(4) for dst in range(4) if src != dst]


def _pcg64_state(seed: int) -> tuple[int, int]:
    """(state, inc) of PCG64 after ``default_rng(seed)``, for one seed in [0, 2**63)."""
    # The steps of _pcg64_states below, unrolled for one seed: it runs once per image. A seed is
    # 1 uint32 word of entropy (2 from 2**32 on); the pool of 4 is zero-padded, and a zero
    # second word hashes the same as padding, so one formula serves all seeds.
    (xor_0, mult_0), (xor_1, mult_1) = _HASHMIX[0], _HASHMIX[1]
    lo = (seed & _M32 ^ xor_0) * mult_0 & _M32
    hi = (seed >> 32 ^ xor_1) * mult_1 & _M32
    pool = [lo ^ lo >> 16, hi ^ hi >> 16, *_ZERO_WORDS]
    for src, dst, xor, mult in _MIX_STEPS:
        v = (pool[src] ^ xor) * mult & _M32
        mixed = (_MIX_L * pool[dst] - _MIX_R * (v ^ v >> 16)) & _M32
        pool[dst] = mixed ^ mixed >> 16
    words = []
    for i, (xor, mult) in enumerate(_GENERATE):
        v = (pool[i & 3] ^ xor) * mult & _M32
        words.append(v ^ v >> 16)
    return _srandom(*(words[k] | words[k + 1] << 32 for k in range(0, 8, 2)))


def _zero_word(xor: int, mult: int) -> int:
    v = xor * mult & _M32  # a zero-padded word hashes the same for every seed
    return v ^ v >> 16


_ZERO_WORDS = [_zero_word(*_HASHMIX[2]), _zero_word(*_HASHMIX[3])]
_MIX_STEPS = [(src, dst, *_HASHMIX[4 + k]) for k, (src, dst) in enumerate(_MIX_ORDER)]


def _pcg64_states(seeds: Sequence[int]) -> list[tuple[int, int]]:
    """``_pcg64_state`` of each seed, hashed all at once as uint32 arrays."""
    s = np.asarray(seeds, dtype=np.uint64)
    shift = np.uint32(16)
    calls = iter(_HASHMIX)

    def hashmix(v: np.ndarray) -> np.ndarray:
        xor, mult = next(calls)
        v = (v ^ np.uint32(xor)) * np.uint32(mult)
        return v ^ (v >> shift)

    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as in C
        words = [(s & np.uint64(_M32)).astype(np.uint32), (s >> np.uint64(32)).astype(np.uint32)]
        zero = np.zeros(len(s), dtype=np.uint32)
        pool = [hashmix(words[0]), hashmix(words[1]), hashmix(zero), hashmix(zero)]
        for src, dst in _MIX_ORDER:
            mixed: np.ndarray = np.uint32(_MIX_L) * pool[dst] - np.uint32(_MIX_R) * hashmix(
                pool[src]
            )
            pool[dst] = mixed ^ (mixed >> shift)
        state = np.empty((len(s), 8), dtype=np.uint32)
        for i, (xor, mult) in enumerate(_GENERATE):
            v = (pool[i % 4] ^ np.uint32(xor)) * np.uint32(mult)
            state[:, i] = v ^ (v >> shift)
    return [_srandom(*row) for row in state.view("<u8").tolist()]


def _srandom(seed_hi: int, seed_lo: int, inc_hi: int, inc_lo: int) -> tuple[int, int]:
    """pcg64 srandom: state 0, step, add the seed, step (a step is state * MULT + inc)."""
    inc = ((inc_hi << 64 | inc_lo) << 1 | 1) & _M128
    return ((inc + (seed_hi << 64 | seed_lo)) * _PCG_MULT + inc) & _M128, inc


def interpolation_steps(steps: int) -> np.ndarray:
    """Return ``steps`` evenly spaced float32 positions from 0 to 1, both ends included."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    return np.linspace(0.0, 1.0, steps, dtype=np.float32)


def _check_pair(
    a: np.ndarray, b: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a64, b64, t64 = (np.asarray(x, dtype=np.float64) for x in (a, b, t))
    if a64.ndim != 1 or a64.shape != b64.shape:
        raise ValueError(f"endpoints must be vectors of one length, got {a64.shape}, {b64.shape}")
    if t64.ndim != 1:
        raise ValueError(f"t must be a 1-D array of positions, got shape {t64.shape}")
    return a64, b64, t64[:, None]


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation: float32 [steps, dim], exactly ``a`` at t=0 and ``b`` at t=1."""
    a64, b64, t64 = _check_pair(a, b, t)
    # (1 - t) a + t b, not a + t (b - a): the latter misses b at t=1 by rounding.
    return ((1.0 - t64) * a64 + t64 * b64).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation: float32 [steps, dim], exactly ``a`` at t=0 and ``b`` at t=1.

    Follows the great circle between the directions of ``a`` and ``b`` (Shoemake 1985), which
    keeps samples at the norm a Gaussian latent typically has. When the vectors are (anti)
    parallel or one is zero the circle is undefined, and this falls back to ``lerp``.
    """
    a64, b64, t64 = _check_pair(a, b, t)
    norms = np.linalg.norm(a64) * np.linalg.norm(b64)
    if norms == 0:
        return lerp(a, b, t)
    omega = np.arccos(np.clip(np.dot(a64, b64) / norms, -1.0, 1.0))
    sin_omega = np.sin(omega)
    if sin_omega < _SLERP_MIN_SIN:
        return lerp(a, b, t)
    wa = np.sin((1.0 - t64) * omega) / sin_omega
    wb = np.sin(t64 * omega) / sin_omega
    return (wa * a64 + wb * b64).astype(np.float32)


def validate_latent(v: Sequence[float], dim: int) -> np.ndarray:
    """Return a client-supplied latent as float32 [dim]; ValueError says what is wrong with it."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise ValueError(f"latent must be a list of {dim} numbers, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError("latent contains NaN or infinity")
    limit = float(np.finfo(np.float32).max)
    if (np.abs(arr) > limit).any():
        raise ValueError(f"latent values must lie within +-{limit:.4g} (float32)")
    return arr.astype(np.float32)
