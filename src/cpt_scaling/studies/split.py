"""Split study: loss of size N after D pretraining and D' specialisation tokens, L(N, D, D').

Points are the domain test loss of the branches (every pretraining checkpoint D, each specialised for D' tokens at
the study's domain ratio, intermediate checkpoints included). ``fit_law("split")`` fits the candidate forms and
keeps the one with the lower held-out error (the paper's exact form is not public; see
:mod:`cpt_scaling.laws.split`). Decisions: the optimal specialisation share of a token total per size, and the
compute multiplier of that optimum over a reference split (``studies.split.reference_fraction``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling import decisions
from cpt_scaling.atomic import write_json
from cpt_scaling.laws import fit_law
from cpt_scaling.studies.common import test_rows, write_csv
from cpt_scaling.tables import read_eval_tables

log = logging.getLogger(__name__)


def split_points(df: pd.DataFrame, domain: str, ratio: float) -> pd.DataFrame:
    """Columns size, N, D (pretraining tokens), D_spec (specialisation tokens so far), loss."""
    df = test_rows(df)
    rows = df[df["kind"].isin(["split", "cpt"]) & (df["suite"] == domain) & (df["ratio"] == ratio) & (df["D"] > 0)]
    pts = rows.rename(columns={"D": "D_spec", "pretrain_tokens": "D"})
    return pts[["size", "N", "D", "D_spec", "loss"]].sort_values(["N", "D", "D_spec"]).reset_index(drop=True)


def split_decisions(law: dict[str, Any], points: pd.DataFrame, reference_fraction: float) -> pd.DataFrame:
    """Optimal specialisation share and compute multiplier per size over a range of token totals."""
    totals = points["D"] + points["D_spec"]
    rows = []
    for n in sorted(points["N"].unique()):
        for total in np.geomspace(float(totals.min()), float(totals.max()) * 100.0, 12):
            m = decisions.split_compute_multiplier(law, N=float(n), total_tokens=float(total),
                                                   reference_fraction=reference_fraction)
            rows.append({"N": int(n), "total_tokens": float(total), "compute": 6.0 * float(n) * float(total),
                         "optimal_spec_fraction": m.get("fraction", m.get("spec_fraction")), "loss": m["loss"],
                         "reference_fraction": reference_fraction, "multiplier": m["multiplier"]})
    return pd.DataFrame(rows)


def fit_split_study(eval_tables: list[Path], domain: str, study: dict[str, Any], fit: dict[str, Any],
                    law_out: Path, points_out: Path, decisions_out: Path) -> dict[str, Any]:
    """Fit the split law for one domain; write the law JSON, its points and the decision table."""
    points = split_points(read_eval_tables(eval_tables), domain, study["ratio"])
    log.info("fitting the split law to %d points of %s", len(points), domain)
    law = fit_law("split", points[["N", "D", "D_spec", "loss"]], huber_delta=fit["huber_delta"],
                  bootstrap=fit["bootstrap"], seed=fit["seed"]).to_json()
    table = split_decisions(law, points, study["reference_fraction"])
    result = {"study": "split", "domain": domain, **law, "decisions": table.to_dict(orient="records")}
    write_csv(points, points_out)
    write_csv(table, decisions_out)
    write_json(law_out, result)
    return result
