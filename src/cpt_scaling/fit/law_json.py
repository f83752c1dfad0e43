"""Reading a fitted law's JSON (``cpt-scaling fit`` output) back: its law and parameters, checked."""

from __future__ import annotations

import math
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.laws import LAWS, Law


def law_params(law_json: Any, where: str) -> tuple[str, Law, dict[str, float]]:
    """The law of a law JSON and its parameters as finite floats; an unknown law, a missing, non-numeric or
    non-finite parameter is an :class:`InputError` naming ``where`` and the parameter."""
    if not isinstance(law_json, dict):
        raise InputError(where, "law JSON must be an object")
    name = law_json.get("law")
    if name not in LAWS:
        raise InputError(where, f"unknown law {name!r} (known: {', '.join(LAWS)})")
    law = LAWS[name]
    raw = law_json.get("params")
    if not isinstance(raw, dict):
        raise InputError(where, "no 'params' object")
    missing = [k for k in (*law.params, *law.fixed) if k not in raw]
    if missing:
        raise InputError(where, f"law JSON lacks parameter(s) {', '.join(missing)}")
    params: dict[str, float] = {}
    for key in (*law.params, *law.fixed):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(where, f"parameter {key!r} is {value!r}, not a finite number")
        params[key] = float(value)
    return name, law, params
