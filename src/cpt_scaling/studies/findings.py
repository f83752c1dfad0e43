"""Every qualitative finding of the seeds, checked on a sweep's own result tables and reported whichever way it goes.

Read from ``results/tables`` (each domain's specialisation table, D-CPT points and usages). Each row has a
``verdict``: "reproduced" where the intervals separate in the paper's direction, "contradicted" where they
separate the other way, "not resolved" where they overlap; ``evidence`` gives the numbers and intervals either
way. A trend with size (or with r) compares the 95 % intervals of the smallest and the largest size (ratio).
A loss's interval is its relative run-to-run noise (``fit.run_noise``, the sweep's stated sd) times 1.96: without
it no trend is resolved. SGER and the usage-2 ratio carry their own bootstrap intervals. The split study's rows
are read from its own table (``split_findings_<domain>.csv``, :func:`~cpt_scaling.studies.split.read_split_findings`)
by :func:`seed_findings`, the one place that gathers every study's rows (the workflow's rule and the demo recorder
both call it).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.studies.common import write_csv
from cpt_scaling.studies.split import read_split_findings

log = logging.getLogger(__name__)

Z = 1.96  # two-sided 95 % normal quantile
REPRODUCED, NOT_RESOLVED, CONTRADICTED = "reproduced", "not resolved", "contradicted"
VERDICTS = (REPRODUCED, NOT_RESOLVED, CONTRADICTED)
ROW_KEYS = ("domain", "finding", "verdict", "evidence")

# finding -> the seed paper's claim it checks
FINDINGS = {
    "specialist_perplexity_falls_with_size": "the specialist's best domain perplexity falls with N (Malaquias Junior "
                                             "et al.)",
    "generalist_perplexity_falls_with_size": "the generalist's best domain perplexity falls with N (Malaquias "
                                             "Junior et al.)",
    "sger_above_one": "SGER > 1 at every size: the specialist needs less compute (Malaquias Junior et al.)",
    "sger_rises_with_size": "SGER rises with N (Malaquias Junior et al.)",
    "forgetting_falls_with_size": "larger specialised models forget less (the interplay paper)",
    "forgetting_rises_with_ratio": "general loss after CPT rises with the domain ratio r (D-CPT Law)",
    "usage2_interior": "with limited domain data the best ratio lies inside (0, 1) (D-CPT Law, usage 2)",
}


def trend(x: list[float], lo: list[float], hi: list[float], rising: bool) -> str:
    """The verdict on "rises with x" (``rising``) or "falls with x": the intervals at the smallest and largest x
    separate in that direction (reproduced), the other way (contradicted), or overlap (not resolved)."""
    if len(x) < 2:
        return NOT_RESOLVED
    first, last = int(np.argmin(x)), int(np.argmax(x))
    up, down = lo[last] > hi[first], hi[last] < lo[first]
    if not (up or down):
        return NOT_RESOLVED
    return REPRODUCED if up == rising else CONTRADICTED


def combine(verdicts: list[str]) -> str:
    """One verdict from several (e.g. per size): contradicted if any is, reproduced if all are, else not resolved."""
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return REPRODUCED if verdicts and all(v == REPRODUCED for v in verdicts) else NOT_RESOLVED


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(str(path), "result table not found (run the sweep's fits first)")
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(str(path), f"missing column(s) {missing} (a table of an older version: rerun its fit)")
    return df


def _half_width(loss: np.ndarray, run_noise: float | None) -> np.ndarray:
    return np.full(len(loss), np.nan) if not run_noise else Z * run_noise * np.abs(loss)


def _interval_text(v: float, lo: float, hi: float) -> str:
    return f"{v:.4g} [{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) and math.isfinite(hi) else f"{v:.4g}"


def direction(v: np.ndarray) -> str:
    """How point estimates (in order of x) move: "rise", "fall" (strictly) or "are not monotone"."""
    d = np.diff(np.asarray(v, dtype=float))
    return "rise" if len(d) and (d > 0).all() else "fall" if len(d) and (d < 0).all() else "are not monotone"


def _by_size(spec: pd.DataFrame, role: str, finding: str, value: str, lo: np.ndarray, hi: np.ndarray,
             rising: bool, shown: np.ndarray | None = None, unit: str = "") -> dict[str, Any]:
    """A trend-with-size row of ``spec`` (one role's rows, by N) from ``value``'s intervals [lo, hi]."""
    v = spec[value].to_numpy(dtype=float)
    shown = v if shown is None else shown
    ok = np.isfinite(lo).all() and np.isfinite(hi).all()
    verdict = trend(list(spec["N"]), list(lo), list(hi), rising) if ok else NOT_RESOLVED
    text = "; ".join(f"{s} (N={n:.3g}): {_interval_text(a, b, c)}"
                     for s, n, a, b, c in zip(spec["size"], spec["N"], shown, lo, hi, strict=True))
    note = "" if ok else " (no interval: fit.run_noise unset)"
    return {"finding": finding, "verdict": verdict,
            "evidence": f"{role} {unit}{text}{note}; the point estimates {direction(v)} with N"}


def size_findings(spec: pd.DataFrame, run_noise: float | None) -> list[dict[str, Any]]:
    """Perplexity, SGER and forgetting against size, from one domain's specialisation table."""
    rows = []
    for role, finding in (("specialist", "specialist_perplexity_falls_with_size"),
                          ("general", "generalist_perplexity_falls_with_size")):
        r = spec[spec["role"] == role].sort_values("N")
        loss = r["domain_loss"].to_numpy(dtype=float)
        h = _half_width(loss, run_noise)
        rows.append(_by_size(r, role, finding, "domain_loss", np.exp(loss - h), np.exp(loss + h), rising=False,
                             shown=np.exp(loss), unit="domain test perplexity: "))
    r = spec[spec["role"] == "specialist"].sort_values("N")
    lo, hi = r["sger_lo"].to_numpy(dtype=float), r["sger_hi"].to_numpy(dtype=float)
    sger = r["sger"].to_numpy(dtype=float)
    text = "; ".join(f"{s}: " + (_interval_text(v, a, b) if math.isfinite(v) else f"> {a:.4g}")
                     for s, v, a, b in zip(r["size"], sger, lo, hi, strict=True))
    above = (CONTRADICTED if (hi < 1).any() else REPRODUCED if len(lo) and (lo > 1).all() else NOT_RESOLVED)
    rows.append({"finding": "sger_above_one", "verdict": above, "evidence": f"SGER by size {text}"})
    ok = bool(len(lo)) and np.isfinite(lo).all() and not np.isnan(hi).any()
    rows.append({"finding": "sger_rises_with_size",
                 "verdict": trend(list(r["N"]), list(lo), list(hi), rising=True) if ok else NOT_RESOLVED,
                 "evidence": f"SGER by size {text}; the point estimates {direction(sger)} with N"})
    general, base = r["general_loss"].to_numpy(dtype=float), (r["general_loss"] - r["forgetting"]).to_numpy(float)
    h = (np.full(len(r), np.nan) if not run_noise else Z * run_noise * np.hypot(general, base))
    f = r["forgetting"].to_numpy(dtype=float)
    rows.append(_by_size(r, "specialist", "forgetting_falls_with_size", "forgetting", f - h, f + h, rising=False,
                         unit="forgetting (general test loss over the base model's, nats): "))
    return rows


def ratio_finding(points: pd.DataFrame, run_noise: float | None) -> dict[str, Any]:
    """Forgetting rises with r: per size, the general test loss at the end of each CPT run against r."""
    general = points[points["target"] == "general"]
    final = general[general["D"] == general.groupby("run")["D"].transform("max")]
    verdicts, evidence = [], []
    for (_, size), g in final.groupby(["N", "size"]):  # in order of size
        by_r = g.groupby("ratio")["loss"].mean().sort_index()
        loss = by_r.to_numpy(dtype=float)
        h = _half_width(loss, run_noise)
        verdicts.append(trend(list(by_r.index), list(loss - h), list(loss + h), rising=True)
                        if run_noise else NOT_RESOLVED)
        evidence.append(f"{size}: " + ", ".join(f"r={r:g} {_interval_text(v, v - w, v + w)}"
                                                for r, v, w in zip(by_r.index, loss, h, strict=True)))
    note = "" if run_noise else " (no interval: fit.run_noise unset)"
    return {"finding": "forgetting_rises_with_ratio", "verdict": combine(verdicts),
            "evidence": "general test loss at the end of each run: " + "; ".join(evidence) + note}


def usage2_finding(usages: pd.DataFrame) -> dict[str, Any]:
    """The usage-2 optimum ratio inside (0, 1) at every size: its interval inside (reproduced), at an edge
    entirely (contradicted), else not resolved."""
    u2 = usages[usages["usage"] == 2]
    inside = (u2["lo"] > 0) & (u2["hi"] < 1)
    edge = (u2["hi"] <= 0) | (u2["lo"] >= 1)
    verdict = (NOT_RESOLVED if u2.empty else CONTRADICTED if edge.any() else
               REPRODUCED if inside.all() else NOT_RESOLVED)
    return {"finding": "usage2_interior", "verdict": verdict,
            "evidence": "; ".join(f"{s}: r*={_interval_text(v, lo, hi)}"
                                  for s, v, lo, hi in u2[["size", "value", "lo", "hi"]].itertuples(index=False))}


def domain_findings(tables: Path, domain: str, run_noise: float | None) -> list[dict[str, Any]]:
    """The findings of one domain: rows ``domain``, ``finding``, ``verdict``, ``evidence``."""
    spec = _read(tables / f"specialization_{domain}.csv",
                 ["size", "N", "role", "domain_loss", "general_loss", "forgetting", "sger", "sger_lo", "sger_hi"])
    points = _read(tables / f"dcpt_points_{domain}.csv", ["target", "run", "size", "N", "D", "ratio", "loss"])
    usages = _read(tables / f"dcpt_usages_{domain}.csv", ["usage", "size", "value", "lo", "hi"])
    rows = [*size_findings(spec, run_noise), ratio_finding(points, run_noise), usage2_finding(usages)]
    return [{"domain": domain, **row} for row in rows]


def seed_findings(tables: Path, domains: list[str], run_noise: float | None,
                  split_domains: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """:func:`domain_findings` of every domain, then the split study's rows of every ``split_domains`` (each with
    exactly the keys ``domain``, ``finding``, ``verdict``, ``evidence``), as one table."""
    rows = [row for d in domains for row in domain_findings(Path(tables), d, run_noise)]
    for row in (row for d in split_domains for row in read_split_findings(Path(tables), d)):
        if set(row) != set(ROW_KEYS) or row["verdict"] not in VERDICTS:
            raise InputError("seed findings", f"a finding row needs keys {list(ROW_KEYS)} and a verdict in "
                                              f"{list(VERDICTS)}: {row}")
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ROW_KEYS))


def write_seed_findings(tables: Path, domains: list[str], run_noise: float | None, out: Path,
                        split_domains: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """:func:`seed_findings`, written to ``out`` (CSV) and logged one line per finding."""
    found = seed_findings(tables, domains, run_noise, split_domains)
    write_csv(found, out)
    for row in found.itertuples(index=False):
        log.info("%s %s: %s (%s)", row.domain, row.finding, row.verdict, row.evidence)
    return found
