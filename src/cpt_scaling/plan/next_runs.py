"""The workflow's ``next_runs`` job (rules/next.smk): its settings from the config (candidate grid, budget, cost
assumptions, pricing defaults) and the proposal on the sweep's own D-CPT fit. The proposer itself lives beside the
decisions it ranks runs for: :mod:`cpt_scaling.fit.proposal` (and :mod:`~cpt_scaling.fit.candidates`,
:mod:`~cpt_scaling.fit.decision_spec`, :mod:`~cpt_scaling.fit.design_noise`, :mod:`~cpt_scaling.fit.ensemble_weights`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.candidates import OPTIONAL_SHAPE_KEYS, SHAPE_KEYS, Candidate, grid_candidates, read_candidates
from cpt_scaling.fit.decision_spec import decision_spec, laws_of, split_points
from cpt_scaling.fit.decisions import DCPT_NAMES, param_sets
from cpt_scaling.fit.proposal import Proposal, propose

log = logging.getLogger(__name__)


def cost_assumptions(cfg_cost: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``peak_flops_per_gpu`` and ``expected_mfu``: the given cost section's, else the schema's defaults."""
    from cpt_scaling.config.load import load_schema

    props = load_schema()["properties"]["cost"]["properties"]
    out = {k: float(props[k]["default"]) for k in ("peak_flops_per_gpu", "expected_mfu")}
    for k in out:
        if cfg_cost and cfg_cost.get(k) is not None:
            out[k] = float(cfg_cost[k])
    return out


#: Share of the GPU-hours of a domain's D-CPT runs that the workflow spends when studies.next_runs sets no budget.
BUDGET_SHARE = 0.1


def _size_columns(size: Mapping[str, Any]) -> dict[str, Any]:
    """A config size's candidate columns: its shape keys (those set) and ``N`` when it gives
    ``n_params_non_embedding``."""
    cols = {k: size[k] for k in (*SHAPE_KEYS, *OPTIONAL_SHAPE_KEYS) if size.get(k) is not None}
    if size.get("n_params_non_embedding") is not None:
        cols["N"] = float(size["n_params_non_embedding"])
    return cols


def workflow_job(cfg: Mapping[str, Any], domain: str) -> dict[str, Any]:
    """The settings of the workflow's ``next_runs`` job for ``domain`` (plain JSON) from a normalised config:
    ``studies.next_runs`` with its grid's defaults filled in (sizes: ``models.sizes``; tokens: ``cpt.tokens``
    plus twice the largest), the domain's D-CPT grid (prices the default budget), the cost assumptions and the
    pricing defaults (``shards.seq_len``, ``tokenizer.vocab_size``, ``cpt.checkpoints``), ``studies.dcpt``."""
    study = cfg["studies"]["next_runs"]
    sweep_sizes = {name: _size_columns(size) for name, size in cfg["models"]["sizes"].items()}
    tokens = study["tokens"] or [*cfg["cpt"]["tokens"], 2 * max(cfg["cpt"]["tokens"])]
    return {"decision": study["decision"], "budget_gpu_hours": study["budget_gpu_hours"],
            "simulations": study["simulations"], "method": study["method"], "seed": study["seed"],
            "candidates": {"sizes": study["sizes"] if study["sizes"] is not None else sweep_sizes,
                           "ratios": list(study["ratios"]), "tokens": list(tokens)},
            "sweep": {"sizes": sweep_sizes, "ratios": list(cfg["domains"][domain]["ratios"]),
                      "tokens": list(cfg["cpt"]["tokens"])},
            "cost": cost_assumptions(cfg["cost"]), "seq_len": cfg["shards"]["seq_len"],
            "vocab_size": cfg["tokenizer"]["vocab_size"], "checkpoints": cfg["cpt"]["checkpoints"],
            "dcpt": dict(cfg["studies"]["dcpt"])}


def propose_for_sweep(doc: Mapping[str, Any], points: pd.DataFrame, job: Mapping[str, Any], where: str
                      ) -> Proposal:
    """:func:`propose` on the sweep's D-CPT study JSON ``doc`` and its ``points``, with the candidate grid,
    budget and defaults of ``job`` (:func:`workflow_job`); a null budget is :data:`BUDGET_SHARE` of the
    GPU-hours of the domain's D-CPT runs, each priced as a candidate is."""
    decision = job["decision"]
    dom, gen, base = laws_of(doc, where)
    laws = {"domain": dom, "general": gen} if decision == "usage1" else {"domain": dom}
    for name, law in laws.items():
        if law is None:
            raise InputError(where, "usage1 needs the general-loss fit: the D-CPT study JSON lacks general_loss")
        if param_sets(law, DCPT_NAMES)[2] == 0:
            raise InputError(where, f"the D-CPT {name}-loss fit has no bootstrap samples, which "
                                    "studies.next_runs needs: set fit.bootstrap (e.g. 1000) in the config")
    pts = split_points(points, where, decision == "usage1")
    spec = decision_spec(decision, pts["domain"], study=job["dcpt"], base=base, usages=doc.get("usages") or [],
                         where=where)

    def priced(grid: Mapping[str, Any], what: str) -> list[Candidate]:
        return read_candidates(grid_candidates(**grid), what, job["cost"], seq_len=int(job["seq_len"]),
                               vocab_size=int(job["vocab_size"]), default_checkpoints=int(job["checkpoints"]))

    candidates = priced(job["candidates"], "studies.next_runs")
    budget = job["budget_gpu_hours"]
    if budget is None:
        budget = BUDGET_SHARE * sum(c.gpu_hours for c in priced(job["sweep"], "the sweep's D-CPT runs"))
        log.info("next: budget %.4g GPU-hours (%g of the domain's D-CPT runs)", budget, BUDGET_SHARE)
    return propose(laws, pts, candidates, spec, float(budget), simulations=int(job["simulations"]),
                   seed=int(job["seed"]), method=job["method"], where=where)
