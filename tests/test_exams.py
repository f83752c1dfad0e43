"""Exams: cloze questions from domain documents, scored with lm-eval-harness, checked against a hand computation
of the choices' summed log-likelihoods on a tiny model built here (no download)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from workflow_utils import REPO

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.docs_io import read_documents
from cpt_scaling.evaluate.exams import build_cloze_exam, domain_terms, load_task, write_exam

SEEDS = REPO / "data" / "demo" / "seeds"


def _texts(name: str) -> list[str]:
    return [str(t) for t in read_documents(SEEDS / f"{name}.jsonl.gz").column("text").to_pylist()]


def test_cloze_questions_are_well_formed() -> None:
    legal, general = _texts("legal")[:40], _texts("general")[:40]
    terms = set(domain_terms(legal, general))
    qs = build_cloze_exam(legal, general, n_questions=30, seed=1)
    assert len(qs) == 30
    assert qs == build_cloze_exam(legal, general, n_questions=30, seed=1)  # seeded
    for q in qs:
        doc = legal[q["doc"]]
        right = q["choices"][q["answer"]]
        assert len(q["choices"]) == len(set(q["choices"])) == 4
        assert right.strip().lower() in terms
        assert (q["question"] + right) in doc  # the question is the document's text up to the term
        for c in q["choices"]:
            if c != right:  # distractors: domain terms absent from this document
                assert c.strip().lower() in terms and c.strip().lower() not in doc.lower()
    assert len({q["answer"] for q in qs}) > 1  # the right answer's position varies


def test_exam_task_with_a_missing_data_file_is_refused(tmp_path: Path) -> None:
    path = write_exam([{"question": "a b c", "choices": [" x", " y"], "answer": 0}], tmp_path, "exam_t")
    (tmp_path / "exam_t.jsonl").unlink()
    with pytest.raises(InputError, match=r"exam_t\.jsonl not found"):
        load_task(path)


def _hand_loglik(model: torch.nn.Module, tokenizer: object, context: str, continuation: str) -> float:
    """Summed log-probability of the continuation's tokens after the context, computed directly."""
    whole = tokenizer(context + continuation)["input_ids"]
    n_ctx = len(tokenizer(context)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), dim=-1)
    return float(sum(logp[t - 1, whole[t]] for t in range(n_ctx, len(whole))))


def test_lm_eval_acc_equals_a_hand_computation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer
    from cpt_scaling.evaluate.exams import score_exam
    from cpt_scaling.train.model import build_model

    train_tokenizer([SEEDS / "legal.jsonl.gz"], tmp_path / "tok", vocab_size=400)
    tokenizer = load_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    model = build_model({"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64}, len(tokenizer), 1024).eval()
    legal, general = _texts("legal")[:30], _texts("general")[:30]
    questions = build_cloze_exam(legal, general, n_questions=24, seed=0)
    task = write_exam(questions, tmp_path / "exams", "exam_legal")

    score = score_exam(model, tokenizer, task, batch_size=4)

    hand = [[_hand_loglik(model, tokenizer, q["question"], c) for c in q["choices"]] for q in questions]
    assert score.n == len(questions) == 24
    assert score.answers == [q["answer"] for q in questions]
    for mine, theirs in zip(hand, score.loglik, strict=True):
        assert theirs == pytest.approx(mine, abs=1e-3)
    acc = sum(max(range(len(h)), key=h.__getitem__) == q["answer"] for h, q in zip(hand, questions, strict=True))
    norm = [[ll / len(c) for ll, c in zip(h, q["choices"], strict=True)] for h, q in
            zip(hand, questions, strict=True)]
    acc_norm = sum(max(range(len(n)), key=n.__getitem__) == q["answer"] for n, q in
                   zip(norm, questions, strict=True))
    assert score.acc == pytest.approx(acc / len(questions))
    assert score.acc_norm == pytest.approx(acc_norm / len(questions))
    right_tokens = sum(len(tokenizer(q["question"] + q["choices"][q["answer"]])["input_ids"])
                       - len(tokenizer(q["question"])["input_ids"]) for q in questions)
    right_ll = sum(h[q["answer"]] for h, q in zip(hand, questions, strict=True))
    assert score.answer_ppl == pytest.approx(math.exp(-right_ll / right_tokens), rel=1e-4)

    # The same from a checkpoint on disk, as the workflow would score it: one tidy row per metric.
    from cpt_scaling.evaluate.exams import score_checkpoints
    from cpt_scaling.train.model import save_model

    save_model(model, tmp_path / "ckpt")
    table = score_checkpoints([(4096, tmp_path / "ckpt")], tmp_path / "tok", {"exam_legal": task}, batch_size=4)
    got = {r["metric"]: r["value"] for r in table.to_pylist()}
    assert table.column("suite").to_pylist() == ["exam_legal"] * 3
    assert got["acc"] == pytest.approx(score.acc) and got["acc_norm"] == pytest.approx(score.acc_norm)
    assert got["answer_ppl"] == pytest.approx(score.answer_ppl, rel=1e-4)
    json.dumps(score.loglik)  # plain floats


LETTERS = "ABCD"


def _mmlu_copy(root: Path) -> tuple[list[dict], list[dict]]:
    """A local copy of MMLU's professional_law subset in the Hub's layout (``<subset>/<split>-*.parquet``): five
    dev questions (the few-shot pool) and eight test questions with known answers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def q(i: int) -> dict:
        return {"question": f"Under the statute of frauds, which contract number {i} must be in writing? ",
                "subject": "professional_law", "answer": i % 4,
                "choices": [f"a lease of {i} years", "a sale of goods", f"a promise number {i}", "none of these"]}

    dev, test = [q(i) for i in range(5)], [q(i) for i in range(10, 18)]
    (root / "professional_law").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(dev), root / "professional_law" / "dev-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(test), root / "professional_law" / "test-00000-of-00001.parquet")
    return dev, test


def _mmlu_text(d: dict) -> str:
    options = "".join(f"\n{letter}. {c}" for letter, c in zip(LETTERS, d["choices"], strict=True))
    return f"{d['question'].strip()}{options}\nAnswer:"


def test_an_lm_eval_task_by_name_with_few_shot_from_a_local_copy_equals_a_hand_computation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate.exams: {task: mmlu_professional_law, num_fewshot: 2, data_dir: <local copy>}: lm-eval's own prompt
    (its description, the first two dev questions answered, then the question) and its acc, recomputed here from
    the model's log-likelihoods of ' A' .. ' D'."""
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer
    from cpt_scaling.evaluate.exams import ExamSpec, score_exam
    from cpt_scaling.train.model import build_model

    dev, test = _mmlu_copy(tmp_path / "mmlu")
    train_tokenizer([SEEDS / "legal.jsonl.gz"], tmp_path / "tok", vocab_size=400)
    tokenizer = load_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    model = build_model({"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64}, len(tokenizer), 1024).eval()
    spec = ExamSpec.parse({"task": "mmlu_professional_law", "num_fewshot": 2, "data_dir": str(tmp_path / "mmlu")},
                          "evaluate.exams.law")
    assert len(spec.files("evaluate.exams.law")) == 2

    score = score_exam(model, tokenizer, spec.to_job([]), batch_size=4)

    shots = "".join(f"{_mmlu_text(d)} {LETTERS[d['answer']]}\n\n" for d in dev[:2])
    description = "The following are multiple choice questions (with answers) about professional law.\n\n"
    contexts = [description + shots + _mmlu_text(d) for d in test]
    assert score.contexts == contexts
    hand = [[_hand_loglik(model, tokenizer, ctx, f" {letter}") for letter in LETTERS] for ctx in contexts]
    for mine, theirs in zip(hand, score.loglik, strict=True):
        assert theirs == pytest.approx(mine, abs=1e-3)
    assert score.answers == [d["answer"] for d in test]
    acc = sum(max(range(4), key=h.__getitem__) == d["answer"] for h, d in zip(hand, test, strict=True)) / len(test)
    assert score.n == 8 and score.acc == pytest.approx(acc)


def test_exam_entries_are_checked_naming_the_key(tmp_path: Path) -> None:
    from cpt_scaling.evaluate.exams import ExamSpec

    cases = {"needs data_dir": {"task": "mmlu_professional_law"},
             "exactly one of yaml": {"task": "x", "yaml": "y.yaml", "data_dir": "d"},
             "unknown key": {"task": "x", "data_dir": "d", "shots": 2},
             "num_fewshot must be": {"task": "x", "data_dir": "d", "num_fewshot": -1}}
    for expected, entry in cases.items():
        with pytest.raises(InputError, match=expected) as info:
            ExamSpec.parse(entry, "evaluate.exams.law")
        assert str(info.value).startswith("evaluate.exams.law: ")
    with pytest.raises(InputError, match="holds no files"):
        ExamSpec.parse({"task": "x", "data_dir": str(tmp_path)}, "evaluate.exams.law").files("evaluate.exams.law")
