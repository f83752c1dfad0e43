"""Deterministic general/domain mixture sampler.

Step ``s`` (0-based) takes ``B`` sequences. The cumulative number of domain sequences after ``c`` sequences is
``floor(r·c + 1/2)``, so the realised domain fraction tracks ``r`` within half a sequence at every step
boundary. Each source is read in a seeded pseudo-random permutation per epoch, wrapping around into a fresh
permutation. The permutation is a keyed Feistel network on the next power of four above the row count, walked
until it lands inside (a bijection evaluated per index, never materialised), so the sampler holds O(1) memory
and is a pure function of the step: resuming needs only the step number, and a rank fetches only its own rows.
"""

from __future__ import annotations

import math

import numpy as np

from cpt_scaling.data.sequences import release_pages

GENERAL, DOMAIN = 0, 1


def domain_sequences_before(step: int, batch_size: int, ratio: float) -> int:
    """Domain sequences drawn in steps ``0 .. step-1``: ``floor(ratio · step · batch_size + 1/2)``."""
    return math.floor(ratio * step * batch_size + 0.5)


FEISTEL_ROUNDS = 6
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (uint64, wrapping)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def permute(index: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """Images of ``index`` (values in ``[0, n)``) under the keyed bijection of ``[0, n)`` that ``keys`` selects."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << shift) | right

    with np.errstate(over="ignore"):
        out = feistel(np.asarray(index, dtype=np.uint64))
        outside = out >= np.uint64(n)
        while outside.any():  # cycle-walking: the domain is < 4n, so a few rounds at most on average
            out[outside] = feistel(out[outside])
            outside = out >= np.uint64(n)
    return out.astype(np.int64)


class _Source:
    """Rows of one source, drawn in a seeded per-epoch permutation with wrap-around."""

    def __init__(self, data: np.ndarray, seed: int, source_id: int) -> None:
        self.data = data
        self.seed = seed
        self.source_id = source_id

    def _keys(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.source_id, epoch])
        return rng.integers(0, 2**63, size=FEISTEL_ROUNDS, dtype=np.uint64)

    def rows(self, start: int, count: int) -> np.ndarray:
        """Row numbers of draws ``start .. start+count-1`` of this source."""
        n = len(self.data)
        epochs, positions = np.divmod(np.arange(start, start + count, dtype=np.int64), n)
        index = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            index[mask] = permute(positions[mask], n, self._keys(int(epoch)))
        return index

    def draw(self, start: int, count: int) -> np.ndarray:
        """Rows for draws ``start .. start+count-1`` of this source (read from the data only for those)."""
        if count == 0:
            return np.asarray(self.data[:0])
        rows = np.array(self.data[self.rows(start, count)])  # a copy, so the mapped pages can go
        release_pages(self.data)
        return rows


class MixtureSampler:
    """Global batches mixing a general and a domain source at ratio ``r`` (fraction of domain sequences)."""

    def __init__(
        self,
        general: np.ndarray | None,
        domain: np.ndarray | None,
        ratio: float,
        batch_size: int,
        seed: int,
    ) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
        if ratio < 1.0 and general is None:
            raise ValueError("general sequences are needed when ratio < 1")
        if ratio > 0.0 and domain is None:
            raise ValueError("domain sequences are needed when ratio > 0")
        self.ratio = ratio
        self.batch_size = batch_size
        self.general = _Source(general, seed, GENERAL) if general is not None else None
        self.domain = _Source(domain, seed, DOMAIN) if domain is not None else None

    def counts(self, step: int) -> tuple[int, int]:
        """(general, domain) sequences in step ``step``."""
        d0 = domain_sequences_before(step, self.batch_size, self.ratio)
        d1 = domain_sequences_before(step + 1, self.batch_size, self.ratio)
        return self.batch_size - (d1 - d0), d1 - d0

    def batch(self, step: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start .. stop-1`` (default: all ``batch_size``) of step ``step``'s batch, general rows first.

        Only those rows are read from the sources, so each rank of a data-parallel run reads just its own slice.
        """
        stop = self.batch_size if stop is None else stop
        if not 0 <= start <= stop <= self.batch_size:
            raise ValueError(f"rows {start}..{stop} outside a batch of {self.batch_size}")
        d0 = domain_sequences_before(step, self.batch_size, self.ratio)
        n_general, _ = self.counts(step)
        parts = []
        g_start, g_stop = min(start, n_general), min(stop, n_general)
        if g_stop > g_start:
            assert self.general is not None
            parts.append(self.general.draw(step * self.batch_size - d0 + g_start, g_stop - g_start))
        d_start, d_stop = max(start, n_general) - n_general, max(stop, n_general) - n_general
        if d_stop > d_start:
            assert self.domain is not None
            parts.append(self.domain.draw(d0 + d_start, d_stop - d_start))
        if not parts:
            source = self.general if self.general is not None else self.domain
            assert source is not None
            return source.draw(0, 0)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
