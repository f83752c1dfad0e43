"""Deterministic general/domain mixture sampler.

Step ``s`` (0-based) takes ``B`` sequences. The cumulative number of domain sequences after ``c`` sequences is
``floor(r·c + 1/2)``, so the realised domain fraction tracks ``r`` within half a sequence at every step
boundary. Each source is read in a seeded permutation per epoch, wrapping around into a fresh permutation; the
sampler is stateless (a pure function of the step), so resuming needs only the step number.
"""

from __future__ import annotations

import math

import numpy as np

GENERAL, DOMAIN = 0, 1


def domain_sequences_before(step: int, batch_size: int, ratio: float) -> int:
    """Domain sequences drawn in steps ``0 .. step-1``: ``floor(ratio · step · batch_size + 1/2)``."""
    return math.floor(ratio * step * batch_size + 0.5)


class _Source:
    """Sequences of one source, drawn in a seeded per-epoch permutation with wrap-around."""

    def __init__(self, data: np.ndarray, seed: int, source_id: int) -> None:
        self.data = data
        self.seed = seed
        self.source_id = source_id
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, self.source_id, epoch])
            self._perms[epoch] = rng.permutation(len(self.data))
        return self._perms[epoch]

    def draw(self, start: int, count: int) -> np.ndarray:
        """Rows for draws ``start .. start+count-1`` of this source."""
        if count == 0:
            return self.data[:0]
        n = len(self.data)
        ks = np.arange(start, start + count)
        epochs, positions = np.divmod(ks, n)
        index = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            index[mask] = self._perm(int(epoch))[positions[mask]]
        return self.data[index]


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

    def batch(self, step: int) -> np.ndarray:
        """The ``(batch_size, seq_len)`` tokens of step ``step``: general rows first, then domain rows."""
        d0 = domain_sequences_before(step, self.batch_size, self.ratio)
        n_general, n_domain = self.counts(step)
        parts = []
        if n_general:
            assert self.general is not None
            parts.append(self.general.draw(step * self.batch_size - d0, n_general))
        if n_domain:
            assert self.domain is not None
            parts.append(self.domain.draw(d0, n_domain))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
