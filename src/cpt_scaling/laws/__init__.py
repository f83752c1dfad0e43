"""Scaling-law parameterisations and a name registry (the fitting API lives in :mod:`cpt_scaling.fit.fitting`).

``LAWS`` maps each name accepted by ``cpt-scaling fit`` to its :class:`Law` (``dcpt`` is L3). The pseudo-law
``split`` is not in the registry: :func:`cpt_scaling.fit.fitting.fit_law` fits every split candidate and keeps the
best by held-out error. The registry imports no fitting code, so ``fitting`` and ``points`` may import it.
"""

from __future__ import annotations

from cpt_scaling.laws.base import Law
from cpt_scaling.laws.chinchilla import CHINCHILLA
from cpt_scaling.laws.cross_domain import CROSS_DOMAIN
from cpt_scaling.laws.dcpt import DCPT, DCPT_FORGET, DCPT_L1, DCPT_L2, DCPT_L3, DCPT_L4, DCPT_L5
from cpt_scaling.laws.powerlaw import POWERLAW
from cpt_scaling.laws.split import SPLIT_CANDIDATES, SPLIT_EFFECTIVE, SPLIT_SEPARABLE, SPLIT_TRANSFER_N

LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        CHINCHILLA,
        DCPT,
        DCPT_L1,
        DCPT_L2,
        DCPT_L3,
        DCPT_L4,
        DCPT_L5,
        DCPT_FORGET,
        CROSS_DOMAIN,
        SPLIT_SEPARABLE,
        SPLIT_EFFECTIVE,
        SPLIT_TRANSFER_N,
        POWERLAW,
    )
}
#: Names ``fit_law`` accepts: the registry plus the selecting pseudo-law ``split``.
FIT_NAMES: tuple[str, ...] = (*LAWS, "split")


__all__ = [
    "FIT_NAMES",
    "LAWS",
    "SPLIT_CANDIDATES",
    "Law",
]
