"""Record the demo's own result tables in report/demo/ after `make demo` (run by maintainers; `make demo-record`).

Copies every study table of results/tables/ (all but the eval table) and writes beside them:
``laws_diagnostics.json``, each law JSON's ``diagnostics`` block (the JSONs hold the bootstrap samples and are
large); ``seed_findings.csv`` (:mod:`cpt_scaling.studies.findings`, recomputed from the copied tables with the
config's ``fit.run_noise``); ``law_optimum_check.csv``, every fit of every law JSON checked against an independent
optimiser on its own objective and points (:mod:`cpt_scaling.fit.optimum_check`; a few minutes); and
``plan_keys.json``, the keys of every artifact the demo config plans. After `make demo-decide` it also copies the
decision targets' JSONs and round-history figures (``decision_*.pdf``).
tests/test_demo_findings.py asserts the findings on these tables and that the keys still match the demo's plan, so
a change that alters the demo's artifacts fails until the tables are re-recorded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from cpt_scaling.config.load import load_config
from cpt_scaling.fit.optimum_check import check_law_json
from cpt_scaling.plan.sweep import build_plan
from cpt_scaling.studies.findings import seed_findings


def planned_keys(config: str) -> list[str]:
    """Sorted keys of every artifact ``config`` plans (relative paths resolve in the working directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(load_config(config), Path(tmp) / "digests.json")
        return sorted(plan.by_key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/demo.yaml")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=Path("report/demo"))
    args = ap.parse_args()
    cfg = load_config(args.config)
    domains = list(cfg["domains"])
    args.out.mkdir(parents=True, exist_ok=True)
    for table in sorted((args.results / "tables").glob("*.csv")):
        if table.name != "eval.csv":
            shutil.copyfile(table, args.out / table.name)
    for decision in [*sorted((args.results / "decisions").glob("*.json")),
                     *sorted((args.results / "figures").glob("decision_*.pdf"))]:
        shutil.copyfile(decision, args.out / decision.name)
    laws = {law.name: json.loads(law.read_text()) for law in sorted((args.results / "laws").glob("*.json"))}
    diagnostics = {name: law.get("diagnostics") for name, law in laws.items()}
    (args.out / "laws_diagnostics.json").write_text(json.dumps(diagnostics, indent=1, sort_keys=True) + "\n")
    checks = [row for name, law in laws.items() for row in check_law_json(name, law)]
    pd.DataFrame(checks).to_csv(args.out / "law_optimum_check.csv", index=False)
    split_domains = [t.stem.removeprefix("split_findings_") for t in sorted(args.out.glob("split_findings_*.csv"))]
    findings = seed_findings(args.out, domains, cfg["fit"]["run_noise"], split_domains)
    findings.to_csv(args.out / "seed_findings.csv", index=False)
    (args.out / "plan_keys.json").write_text(json.dumps({"config": args.config, "keys": planned_keys(args.config)},
                                                        indent=1) + "\n")
    print(findings.to_string(index=False))
    print(pd.DataFrame(checks).to_string(index=False))


if __name__ == "__main__":
    main()
