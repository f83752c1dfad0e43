"""Build the demo's cloze exams (data/demo/exams/) from the held-out documents of the demo pool.

A pool document belongs to a domain by its audit field ``source`` (the workflow itself never reads it) and is held
out when ``hash_fraction(doc_hash(text)) < shards.heldout_fraction`` of config/demo.yaml: the rule the shards stage
uses to split the held-out suites off each corpus, so the exam's documents are the held-out documents of the
domain's suite (those the classifier also labels with the domain). Questions come from
:func:`cpt_scaling.evaluate.exams.build_cloze_exam`: a held-out sentence cut just before one of the domain's terms
(words over-represented in the domain's held-out documents against all other pool documents), that term as the right
choice, three distractors that are domain terms of other held-out documents of the domain.

    python scripts/make_demo_exams.py            # writes data/demo/exams/exam_<domain>.{jsonl,yaml}
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from cpt_scaling.data.docs_io import doc_hash, hash_fraction, read_documents
from cpt_scaling.evaluate.exams import build_cloze_exam, write_exam

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"scotus-courtlistener": "legal", "india-central-acts": "legal", "tat-qa": "accounting"}


def domain_of(source: str) -> str:
    if source.startswith("medquad"):
        return "medical"
    return SOURCES.get(source, "general")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "demo.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "demo" / "exams")
    ap.add_argument("--questions", type=int, default=40, help="questions per domain")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    fraction = cfg.get("shards", {}).get("heldout_fraction", 0.1)
    docs: list[tuple[str, str]] = []  # (domain, text)
    for pattern in cfg["data"]["pool"]:
        for path in sorted(REPO.glob(pattern)):
            table = read_documents(path)
            sources = _column(path, "source")
            docs += [(domain_of(s), t) for s, t in zip(sources, table.column("text").to_pylist(), strict=True)]
    for domain in cfg["domains"]:
        heldout = [t for d, t in docs if d == domain and hash_fraction(doc_hash(t)) < fraction]
        background = [t for d, t in docs if d != domain]
        questions = build_cloze_exam(heldout, background, n_questions=args.questions, seed=args.seed)
        task = write_exam(questions, args.out, f"exam_{domain}")
        print(f"{task}: {len(questions)} questions from {len(heldout)} held-out {domain} documents")


def _column(path: Path, name: str) -> list[str]:
    import gzip
    import json

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)[name] for line in f]


if __name__ == "__main__":
    main()
