"""Cross-domain D-CPT Law study (Que et al. 2024): one law for all domains, tested on domains it never saw.

Points are the domain test loss of every D-CPT run of every domain (its annealed points; every checkpoint with
``fit.intermediate_points``, flagged ``annealed`` false), each with its
domain's two probe features from the smallest model size, the cheapest probe: ``k1``, the base model's loss on the
domain before continued pretraining, and ``k2``, the early slope of the domain loss, ``(k1 - loss) / tokens`` at
the first checkpoint of the domain's highest-ratio run at the smallest budget (a short probe run's reading; here
it comes from the sweep's own first checkpoint). The law is fitted on every domain (the largest size held out
with three sizes or more) and, for the question it exists for, leave-one-domain-out: fitted on the other domains,
it predicts a domain from that domain's ``k1``, ``k2`` alone. Leave-one-domain-out needs more domains than the
domain term's free parameters (each fit on the others must pin them): with fewer it is "not identified", no error
figure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit.fitting import predict
from cpt_scaling.fit.validation import leave_domains_out
from cpt_scaling.studies.common import annealed_points, fit_points, note_unannealed, run_groups, selection, write_csv
from cpt_scaling.studies.dcpt import base_losses, dcpt_points

log = logging.getLogger(__name__)

LAW_COLUMNS = ["N", "D", "r", "k1", "k2"]
K2_UNIT = 1e9  # k2 is the domain-loss fall per billion tokens
DOMAIN_TERM_PARAMS = ("F", "mu", "w2")
# Each leave-one-domain-out fit must see at least as many domains as the domain term has free parameters (k1, k2
# are constant within a domain: one offset per domain pins it): more domains than parameters in all.
MIN_LODO_DOMAINS = len(DOMAIN_TERM_PARAMS) + 1


def domain_probe(df: pd.DataFrame, points: pd.DataFrame, domain: str) -> dict[str, Any]:
    """``k1`` and ``k2`` of ``domain`` from its smallest size (``points``: the domain's D-CPT domain-loss rows)."""
    bases = base_losses(df, domain)
    if not bases:
        raise InputError(domain, "the cross-domain study needs the base model's evaluation on the domain")
    size, base = min(bases.items(), key=lambda kv: kv[1]["N"])
    rows = points[(points["size"] == size) & (points["ratio"] == points["ratio"].max())]
    rows = rows[rows["budget"] == rows["budget"].min()]
    first = rows[rows["D"] == rows["D"].min()].iloc[0]
    k1 = base["domain_loss"]
    slope = (k1 - float(first["loss"])) / float(first["D"]) * K2_UNIT
    if slope <= 0:
        raise InputError(domain, f"domain loss did not fall in the probe ({k1:.4f} -> {first['loss']:.4f} after "
                                 f"{first['D']:.0f} tokens): k2 must be positive")
    return {"size": size, "k1": k1, "k2": slope, "k2_unit": "loss drop per 1e9 tokens",
            "probe_ratio": float(first["ratio"]), "probe_tokens": int(first["D"])}


def cross_points(df: pd.DataFrame, domains: list[str],
                 fit: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Domain-loss points of every domain with columns domain, run, size, N, D, r, ratio, k1, k2, loss, annealed
    (annealed ones only unless ``fit`` sets intermediate_points; ``fit`` None: every checkpoint); the probes.
    A probe is a feature, not a fitted point: it reads the first checkpoint, annealed or not."""
    frames, probes = [], {}
    for domain in domains:
        pts = dcpt_points(df, domain)
        pts = pts[pts["target"] == "domain"]
        probes[domain] = domain_probe(df, pts, domain)
        if fit is not None:
            pts = annealed_points(pts, fit, f"cross-domain points of {domain}")
        frames.append(pts.assign(domain=domain, k1=probes[domain]["k1"], k2=probes[domain]["k2"]))
    cols = ["domain", "run", "size", "N", "D", "r", "ratio", "k1", "k2", "loss", "annealed"]
    return pd.concat(frames, ignore_index=True)[cols], probes


def leave_one_domain_out(points: pd.DataFrame, fit: dict[str, Any]) -> tuple[pd.Series, dict[str, Any]]:
    """Each domain predicted by a fit on the others: the predictions (by row) and the validation summary."""
    lodo = leave_domains_out(points[["domain", *LAW_COLUMNS, "loss"]], "cross_domain",
                             huber_delta=fit["huber_delta"], seed=fit["seed"])
    pred = pd.Series(float("nan"), index=points.index)
    for split in lodo["splits"]:
        mask = points["domain"] == split["held_out"]
        pred[mask] = predict({"law": "cross_domain", "params": split["params"]}, points.loc[mask, LAW_COLUMNS])
        log.info("cross-domain law without %s: held-out mean relative error %.4f", split["held_out"],
                 split["heldout"]["mean_rel_error"])
    return pred, lodo


def fit_cross_domain_study(eval_tables: list[Path], domains: list[str], fit: dict[str, Any], law_out: Path,
                           points_out: Path) -> dict[str, Any]:
    """Fit the cross-domain law on all domains and, with ``MIN_LODO_DOMAINS`` or more, leave-one-domain-out; write
    the law JSON and its points."""
    df = read_eval_tables(eval_tables)
    points, probes = cross_points(df, domains, fit)
    every, _ = cross_points(df, domains)
    log.info("fitting the cross-domain law to %d points of %d domains", len(points), len(domains))
    law = fit_points("cross_domain", points[[*LAW_COLUMNS, "loss"]], fit, groups=run_groups(points))
    points["fit"] = predict(law, points[LAW_COLUMNS])
    identifiability = {"domain_term_free_params": list(DOMAIN_TERM_PARAMS), "n_free_params": len(DOMAIN_TERM_PARAMS),
                       "n_domains": len(domains), "leave_one_domain_out_min_domains": MIN_LODO_DOMAINS,
                       "note": "the domain term is pinned only by one offset per domain (k1, k2 constant within a "
                               "domain); with fewer domains than free parameters it is not identified"}
    if len(domains) <= len(DOMAIN_TERM_PARAMS):
        law["diagnostics"]["warnings"].append(
            f"{len(domains)} domains for {len(DOMAIN_TERM_PARAMS)} free domain-term parameters: not identified")
        log.warning("cross-domain law: %s", law["diagnostics"]["warnings"][-1])
    result = {"study": "cross_domain", "domains": domains, "probes": probes, **law,
              "identifiability": identifiability, "point_selection": selection(every, points, fit)}
    note_unannealed(result, points, "cross-domain law")
    if len(domains) >= MIN_LODO_DOMAINS:
        points["lodo"], lodo = leave_one_domain_out(points, fit)
        result["leave_one_domain_out"] = lodo
        result["leave_one_domain_out_status"] = "identified"
    else:
        points["lodo"] = float("nan")
        result["leave_one_domain_out"] = None
        result["leave_one_domain_out_status"] = "not identified"
        result["leave_one_domain_out_note"] = (
            f"not identified: each fit on the other domains sees {len(domains) - 1} domain(s) for "
            f"{len(DOMAIN_TERM_PARAMS)} free domain-term parameters ({', '.join(DOMAIN_TERM_PARAMS)}); it needs "
            f"at least {MIN_LODO_DOMAINS} domains, the sweep has {len(domains)}")
        log.warning("cross-domain law: leave-one-domain-out %s", result["leave_one_domain_out_note"])
    write_csv(points, points_out)
    write_json(law_out, result)
    return result
