"""Which of the seeds' qualitative findings a sweep's own result tables reproduce, per domain.

Read from ``results/tables`` (the specialisation table, the D-CPT points and usages of each domain):

- ``perplexity_falls_with_size``: the best checkpoint's domain perplexity and general test loss fall strictly with
  N, for the specialist and the generalist alike (Malaquias Junior et al.: both improve with scale);
- ``sger_above_one_rising``: SGER > 1 at every size and strictly rising with N (the specialist needs less compute,
  and more so at scale);
- ``forgetting_rises_with_ratio``: at every size, the general loss at the end of each CPT run rises strictly with the
  domain ratio r (D-CPT: more domain data, more forgetting);
- ``usage2_interior``: the usage-2 optimum ratio lies strictly inside (0, 1) at every size (D-CPT: with limited
  domain data some general data helps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError

FINDINGS = ("perplexity_falls_with_size", "sger_above_one_rising", "forgetting_rises_with_ratio", "usage2_interior")


def _falls(values: pd.Series) -> bool:
    v = values.to_numpy(dtype=float)
    return bool(len(v) >= 2 and np.all(np.isfinite(v)) and np.all(np.diff(v) < 0))


def _fmt(values: pd.Series) -> str:
    return " > ".join(f"{v:.4g}" for v in values) if _falls(values) else ", ".join(f"{v:.4g}" for v in values)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(str(path), "result table not found (run the sweep's fits first)")
    return pd.read_csv(path)


def domain_findings(tables: Path, domain: str) -> list[dict[str, object]]:
    """The four findings of one domain: rows ``domain``, ``finding``, ``holds`` and ``evidence`` (the numbers)."""
    spec = _read(tables / f"specialization_{domain}.csv").sort_values("N")
    points = _read(tables / f"dcpt_points_{domain}.csv")
    usages = _read(tables / f"dcpt_usages_{domain}.csv")
    rows: list[dict[str, object]] = []

    checks, evidence = [], []
    for role in ("specialist", "general"):
        r = spec[spec["role"] == role]
        checks += [_falls(r["perplexity"]), _falls(r["general_loss"])]
        evidence.append(f"{role}: domain ppl {_fmt(r['perplexity'])}; general loss {_fmt(r['general_loss'])}")
    rows.append({"finding": FINDINGS[0], "holds": all(checks), "evidence": "; ".join(evidence)})

    sger = spec[spec["role"] == "specialist"]["sger"]
    holds = bool(sger.notna().all() and (sger > 1).all() and _falls(-sger))
    rows.append({"finding": FINDINGS[1], "holds": holds,
                 "evidence": "SGER by size " + " < ".join(f"{v:.3g}" for v in sger)})

    general = points[points["target"] == "general"]
    final = general[general["D"] == general.groupby("run")["D"].transform("max")]
    checks, evidence = [], []
    for (_, size), g in final.groupby(["N", "size"]):  # in order of size
        by_r = g.groupby("ratio")["loss"].mean().sort_index()
        checks.append(_falls(-by_r))
        evidence.append(f"{size}: " + ", ".join(f"r={r:g} {v:.4g}" for r, v in by_r.items()))
    rows.append({"finding": FINDINGS[2], "holds": bool(checks) and all(checks), "evidence": "; ".join(evidence)})

    u2 = usages[usages["usage"] == 2]
    holds = bool(len(u2) and ((u2["value"] > 0) & (u2["value"] < 1)).all())
    rows.append({"finding": FINDINGS[3], "holds": holds,
                 "evidence": "; ".join(f"{s}: r*={v:.3g} [{lo:.3g}, {hi:.3g}]"
                                       for s, v, lo, hi in u2[["size", "value", "lo", "hi"]].itertuples(index=False))})
    return [{"domain": domain, **row} for row in rows]


def seed_findings(tables: Path, domains: list[str]) -> pd.DataFrame:
    """:func:`domain_findings` of every domain, as one table."""
    return pd.DataFrame([row for d in domains for row in domain_findings(Path(tables), d)])
