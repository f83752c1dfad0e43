"""The ``decide:`` section (the decision target, README: Ask for a decision): its keys checked against the rest of
the config, and its defaults that depend on the sweep (starting design, candidates) filled in."""

from __future__ import annotations

from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost_model

#: Fewest bootstrap resamples the decision's interval is read from (:func:`cpt_scaling.fit.decision_spec.targets_from`).
MIN_BOOTSTRAP = 20


def _middle_three(values: list[float]) -> list[float]:
    """The smallest, a middle and the largest of sorted ``values`` (all of them when three or fewer)."""
    return values if len(values) <= 3 else [values[0], values[len(values) // 2], values[-1]]


def resolve_decide(cfg: dict[str, Any], where: str) -> None:
    """Check ``cfg["decide"]`` (when set) against the sweep and fill its sweep-dependent defaults in place:
    ``size`` (the largest size), ``start.sizes`` (the two smallest), ``start.ratios`` (three of the domain's),
    ``candidate_ratios`` (the domain's), ``candidate_tokens`` (``cpt.tokens``). Every problem is one
    :class:`InputError` naming the key."""
    dec = cfg.get("decide")
    if dec is None:
        return
    domains, sizes = cfg["domains"], cfg["models"]["sizes"]
    if dec["domain"] not in domains:
        raise InputError(where, f"decide.domain: '{dec['domain']}' is not one of the domains ({', '.join(domains)})")
    by_n = sorted(sizes, key=lambda name: (cost_model.size_non_embedding_params(sizes[name]), name))
    for key, names in (("decide.size", [dec["size"]] if dec["size"] else []),
                       ("decide.start.sizes", dec["start"]["sizes"] or [])):
        for name in names:
            if name not in sizes:
                raise InputError(where, f"{key}: '{name}' is not one of models.sizes ({', '.join(sizes)})")
    dec["size"] = dec["size"] or by_n[-1]
    dec["start"]["sizes"] = sorted(dec["start"]["sizes"] or by_n[:2])
    ratios = sorted(dec["candidate_ratios"] or domains[dec["domain"]]["ratios"])
    dec["candidate_ratios"] = ratios
    start_ratios = sorted(dec["start"]["ratios"] or _middle_three(ratios))
    missing = [r for r in start_ratios if r not in ratios]
    if missing:
        raise InputError(where, f"decide.start.ratios: {missing} are not candidate ratios (decide.candidate_ratios, "
                                f"default domains.{dec['domain']}.ratios): {ratios}")
    dec["start"]["ratios"] = start_ratios
    budgets = cfg["cpt"]["tokens"]
    tokens = sorted(dec["candidate_tokens"] or budgets)
    step = cfg["training"]["batch_size"] * cfg["shards"]["seq_len"]
    for t in tokens:
        if t % step:
            raise InputError(where, f"decide.candidate_tokens: {t} is not a multiple of one optimizer step "
                                    f"(training.batch_size x shards.seq_len = {step} tokens)")
        if t not in budgets and t < max(budgets):
            raise InputError(where, f"decide.candidate_tokens: {t} is not in cpt.tokens and below its largest "
                                    f"({max(budgets)}): a new budget extends the WSD trunks, so it must be larger")
    if not set(budgets) <= set(tokens):
        raise InputError(where, "decide.candidate_tokens: must include every cpt.tokens budget (the starting "
                                f"design trains them): {budgets}")
    dec["candidate_tokens"] = tokens
    if cfg["fit"]["bootstrap"] < MIN_BOOTSTRAP:
        raise InputError(where, f"fit.bootstrap: the decision target reads its interval from the bootstrap "
                                f"resamples: set fit.bootstrap >= {MIN_BOOTSTRAP} (e.g. 200), got "
                                f"{cfg['fit']['bootstrap']}")
    budget, per_round = dec["budget_gpu_hours"], dec["round_gpu_hours"]
    if budget is not None and per_round is not None and per_round > budget:
        raise InputError(where, f"decide.round_gpu_hours: {per_round} is more than decide.budget_gpu_hours {budget}")
