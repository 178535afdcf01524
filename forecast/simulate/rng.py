"""Per-path random streams for the numba kernels: xoshiro256** and the samplers built on it.

Why our own generator: numba's built-in ``np.random`` is one Mersenne Twister per *thread*,
reached through a thread-local lookup on every draw (about 35-47 ns a draw on the development
machine), and it can only be seeded with 32 bits. An inlined xoshiro256** costs a few ns, and a
path's state is just four ``uint64`` words, seeded from ``numpy.random.SeedSequence`` with the
path's index as spawn key. So a path's stream depends on the root seed and its index only:
results are identical whatever the thread count, chunking or machine count.

The non-uniform samplers follow NumPy's own algorithms (``numpy/random/src/distributions``):
the ziggurat for the exponential, Marsaglia's polar method for the normal, Marsaglia-Tsang for
the gamma, multiplication / PTRS (Hörmann 1993) for the Poisson. Each is tested against its exact
distribution in ``tests/test_rng.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

_TWO_M53 = 1.0 / 9007199254740992.0


def path_states(root_seed: int, start: int, stop: int) -> np.ndarray:
    """xoshiro256** states ``[stop - start, 4]`` for paths ``start .. stop-1`` of a run.

    Path ``p`` gets ``SeedSequence(root_seed, spawn_key=(p,))``: the same child as
    ``SeedSequence(root_seed).spawn(n)[p]``, computed without the others.
    """
    out = np.empty((stop - start, 4), dtype=np.uint64)
    for i, p in enumerate(range(start, stop)):
        words = np.random.SeedSequence(root_seed, spawn_key=(p,)).generate_state(4, np.uint64)
        if not words.any():  # the all-zero state is the one xoshiro cannot leave
            words[0] = 1
        out[i] = words
    return out


@njit
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@njit
def next_u64(st):
    """Advance the xoshiro256** state ``st`` (uint64[4]) and return 64 random bits."""
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    result = _rotl(s1 * uint64(5), 7) * uint64(9)
    t = s1 << uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    st[0], st[1], st[2], st[3] = s0, s1, s2, s3
    return result


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit
def _mix64(z):
    """splitmix64's output function (Stafford's variant 13): a bijective 64-bit mixer."""
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@njit
def seed_substream(out, root, key):
    """Write into ``out`` the xoshiro256** state of substream ``key`` of the path ``root``.

    The path's four words and the key are mixed into one 64-bit seed, expanded into four words
    by splitmix64 (the seeding Vigna recommends for xoshiro). A lead's randomness then depends
    on the path and the lead's own key only, not on how many numbers other leads drew: a
    scenario that changes one lead leaves every other lead's trajectory as it was (sharp
    common random numbers).
    """
    x = _mix64(root[0] ^ _mix64(root[1] + uint64(key) * _GOLDEN)) ^ root[2]
    for i in range(4):
        x += _GOLDEN
        out[i] = _mix64(x)
    if out[0] == 0 and out[1] == 0 and out[2] == 0 and out[3] == 0:
        out[0] = uint64(1)


@njit
def uniform(st):
    """Uniform on [0, 1) with 53 random bits."""
    return float(next_u64(st) >> uint64(11)) * _TWO_M53


def _ziggurat_exp_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia & Tsang's (2000) 256-layer ziggurat for the exponential, for 53-bit integers.

    ``ke``: acceptance thresholds, ``we``: integer-to-x scales, ``fe``: ``exp(-x)`` at the layer
    edges (their ``zigset``, with ``m2 = 2**53`` as in NumPy's 64-bit version).
    """
    m2 = 2.0**53
    de = _ZIG_EXP_R
    te = de
    q = _ZIG_EXP_V / math.exp(-de)
    ke = np.zeros(256, dtype=np.uint64)
    we = np.zeros(256)
    fe = np.zeros(256)
    ke[0] = np.uint64((de / q) * m2)
    we[0], we[255] = q / m2, de / m2
    fe[0], fe[255] = 1.0, math.exp(-de)
    for i in range(254, 0, -1):
        de = -math.log(_ZIG_EXP_V / de + math.exp(-de))
        ke[i + 1] = np.uint64((de / te) * m2)
        te = de
        fe[i] = math.exp(-de)
        we[i] = de / m2
    return ke, we, fe


_ZIG_EXP_R = 7.69711747013104972  # start of the tail
_ZIG_EXP_V = 3.949659822581572e-3  # area of each layer
_ZIG_KE, _ZIG_WE, _ZIG_FE = _ziggurat_exp_tables()


@njit
def exponential(st):
    """Standard exponential by the ziggurat method (Marsaglia & Tsang 2000, as NumPy does).

    One 64-bit draw gives the layer (8 bits) and a 53-bit abscissa; 98.9% of draws are
    accepted at once with a multiply and a compare, about 10x faster than ``-log(1 - U)``.
    The rest go through the exact wedge test or, in the base layer, the exponential tail.
    """
    ri = next_u64(st) >> uint64(3)
    idx = ri & uint64(0xFF)
    ri >>= uint64(8)
    if ri < _ZIG_KE[idx]:
        return float(ri) * _ZIG_WE[idx]
    # The rare rest out of line, so that this loop-free fast path is small enough for LLVM
    # to inline into the kernels' leaver loops (about 9% of a path's time went to the call).
    return _exponential_rest(st, ri, idx)


@njit
def _exponential_rest(st, ri, idx):
    """:func:`exponential` after its first draw ``(ri, idx)`` missed the rectangle: the same
    draws as one loop over the whole method."""
    while True:
        x = float(ri) * _ZIG_WE[idx]
        if ri < _ZIG_KE[idx]:
            return x
        if idx == 0:  # the tail beyond r: r + Exp(1)
            return _ZIG_EXP_R - math.log1p(-uniform(st))
        if (_ZIG_FE[idx - 1] - _ZIG_FE[idx]) * uniform(st) + _ZIG_FE[idx] < math.exp(-x):
            return x
        ri = next_u64(st) >> uint64(3)
        idx = ri & uint64(0xFF)
        ri >>= uint64(8)


@njit
def normal(st):
    """Standard normal, Marsaglia's polar method (one value per accepted pair)."""
    while True:
        x1 = 2.0 * uniform(st) - 1.0
        x2 = 2.0 * uniform(st) - 1.0
        r2 = x1 * x1 + x2 * x2
        if 0.0 < r2 < 1.0:
            return x2 * math.sqrt(-2.0 * math.log(r2) / r2)


@njit
def lognormal(st, mu, sigma):
    return math.exp(mu + sigma * normal(st))


@njit
def standard_gamma(st, shape):
    """Gamma(shape, 1): Marsaglia-Tsang for shape >= 1, Johnk-style rejection below."""
    if shape <= 0.0:
        return 0.0
    if shape == 1.0:
        return exponential(st)
    if shape < 1.0:
        while True:
            u = uniform(st)
            v = exponential(st)
            if u <= 1.0 - shape:
                x = u ** (1.0 / shape)
                if x <= v:
                    return x
            else:
                y = -math.log((1.0 - u) / shape)
                x = (1.0 - shape + shape * y) ** (1.0 / shape)
                if x <= v + y:
                    return x
    b = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * b)
    while True:
        while True:
            x = normal(st)
            v = 1.0 + c * x
            if v > 0.0:
                break
        v = v * v * v
        u = uniform(st)
        if u < 1.0 - 0.0331 * (x * x) * (x * x):
            return b * v
        if math.log(u) < 0.5 * x * x + b * (1.0 - v + math.log(v)):
            return b * v


@njit
def poisson(st, lam):
    """Poisson(lam): multiplication method below 10, PTRS (transformed rejection) above."""
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        enlam = math.exp(-lam)
        k = 0
        prod = 1.0
        while True:
            prod *= uniform(st)
            if prod > enlam:
                k += 1
            else:
                return k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = uniform(st) - 0.5
        v = uniform(st)
        us = 0.5 - abs(u)
        k = int(math.floor((2.0 * a / us + b) * u + lam + 0.43))  # noqa: RUF046
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return k


@njit
def negative_binomial(st, mean, size):
    """Count with the given mean and variance ``mean + mean**2 / size`` (gamma-Poisson).

    ``size <= 0`` means no over-dispersion: Poisson(mean).
    """
    if mean <= 0.0:
        return 0
    if size <= 0.0:
        return poisson(st, mean)
    return poisson(st, standard_gamma(st, size) * (mean / size))
