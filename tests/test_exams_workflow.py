"""Exams through the workflow (issue 16, Must show 2): on a copy of the finished micro sweep, ``evaluate.exams``
names a short exam, Snakemake scores one run's checkpoints through lm-eval-harness, and the final checkpoint's
``acc`` equals a hand computation of the choices' summed log-likelihoods on that model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_exams import _hand_loglik
from workflow_utils import REPO, run_snakemake

from cpt_scaling.evaluate.exams import write_exam

MAX_TOKENS = 64  # micro's models have 64 positions: longer items would be truncated by lm-eval
N_QUESTIONS = 16


def _short_exam(workdir: Path, tokenizer: object) -> tuple[Path, list[dict]]:
    """The demo legal exam's first questions whose every choice fits the micro model's positions with the question."""
    lines = (REPO / "data" / "demo" / "exams" / "exam_legal.jsonl").read_text().splitlines()
    questions = []
    for q in map(json.loads, lines):
        if all(len(tokenizer(q["question"] + c)["input_ids"]) <= MAX_TOKENS for c in q["choices"]):
            questions.append(q)
        if len(questions) == N_QUESTIONS:
            break
    assert len(questions) == N_QUESTIONS
    return write_exam(questions, workdir / "exams", "short_legal"), questions


def test_exam_acc_of_the_final_checkpoint_equals_a_hand_computation(micro_copy: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lm_eval")
    from cpt_scaling.config.load import normalise_config, read_config_file
    from cpt_scaling.data.tokenizer import load_tokenizer
    from cpt_scaling.evaluate.tables import gather_eval_tables
    from cpt_scaling.plan.sweep import build_plan
    from cpt_scaling.train.model import load_model
    from cpt_scaling.train.runs import run_checkpoints

    monkeypatch.chdir(micro_copy)  # config paths are relative to the working directory
    raw = read_config_file(micro_copy / "micro.yaml")
    plan = build_plan(normalise_config(raw, "micro.yaml"), micro_copy / "digests.json")
    tokenizer = load_tokenizer(Path(plan.tokenizer.dir))
    task, questions = _short_exam(micro_copy, tokenizer)
    raw.setdefault("evaluate", {})["exams"] = {"short_legal": str(task.relative_to(micro_copy))}
    (micro_copy / "exams.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    plan = build_plan(normalise_config(raw, "exams.yaml"), micro_copy / "digests.json")
    run = next(a for a in plan.by_key.values() if a.stage == "train" and a.name.startswith("cpt-s-legal-r1-"))
    exam = next(a for a in plan.by_key.values() if a.stage == "exam" and a.spec.get("run") == run.key)
    assert exam.job.meta["run"] == run.name and len(plan.all_exams()) > 1  # one exam job per run

    result = run_snakemake(micro_copy, "exams.yaml", exam.output, "--cores", "1")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "rule exam:" in result.stdout + result.stderr
    assert "rule train:" not in result.stdout + result.stderr  # the finished sweep is reused as it is

    rows = pq.read_table(exam.output).to_pandas()
    final_tokens, final_dir = run_checkpoints(run.dir)[-1]
    assert sorted(rows["D"].unique()) == [t for t, _ in run_checkpoints(run.dir)]
    final = rows[rows["D"] == final_tokens].set_index("metric")["value"]

    model = load_model(final_dir).eval()
    hand = [[_hand_loglik(model, tokenizer, q["question"], c) for c in q["choices"]] for q in questions]
    picks = [max(range(len(h)), key=h.__getitem__) for h in hand]
    acc = sum(p == q["answer"] for p, q in zip(picks, questions, strict=True)) / len(questions)
    assert final["acc"] == pytest.approx(acc, abs=1e-12)
    norm = [max(range(len(h)), key=lambda i, h=h, q=q: h[i] / len(q["choices"][i])) for h, q in
            zip(hand, questions, strict=True)]
    assert final["acc_norm"] == pytest.approx(
        sum(p == q["answer"] for p, q in zip(norm, questions, strict=True)) / len(questions), abs=1e-12)
    right_ll = sum(h[q["answer"]] for h, q in zip(hand, questions, strict=True))
    right_tokens = sum(len(tokenizer(q["question"] + q["choices"][q["answer"]])["input_ids"])
                       - len(tokenizer(q["question"])["input_ids"]) for q in questions)
    assert final["answer_ppl"] == pytest.approx(math.exp(-right_ll / right_tokens), rel=1e-4)
    assert set(rows["n_questions"]) == {N_QUESTIONS} and set(rows["suite"]) == {"short_legal"}

    # The exam rows join the run's loss rows in the tidy eval table, with its sweep coordinates.
    losses = next(a for a in plan.evals.values() if a.spec.get("run") == run.key)
    table = gather_eval_tables([Path(losses.output), Path(exam.output)], micro_copy / "t.parquet",
                               micro_copy / "t.csv")
    assert set(table["metric"]) == {"loss", "acc", "acc_norm", "answer_ppl"}
    loss_rows = table[table["metric"] == "loss"]
    assert (loss_rows["value"] == loss_rows["loss"]).all() and loss_rows["split"].notna().all()
    exam_rows = table[table["suite"] == "short_legal"]
    assert len(exam_rows) == 3 * len(run_checkpoints(run.dir)) and exam_rows["loss"].isna().all()
    assert set(exam_rows["run"]) == {run.name} and set(exam_rows["ratio"]) == {1.0}


def _with_exam(raw: dict, task: Path) -> dict:
    return {**raw, "evaluate": {**raw.get("evaluate", {}), "exams": {"exam_legal": str(task)}}}


@pytest.mark.parametrize("config", ["tests/configs/micro.yaml", "config/demo.yaml"])
def test_exams_add_one_job_per_model_and_rekey_nothing_else(config: str, tmp_path: Path) -> None:
    from test_explain import _plan, _raw

    from cpt_scaling.dryrun.explain import SPEC, artifact_contexts, spec_source

    raw = _raw(REPO / config)
    before = _plan(raw, tmp_path)
    after = _plan(_with_exam(raw, REPO / "data" / "demo" / "exams" / "exam_legal.yaml"), tmp_path)
    assert before.all_exams() == []
    exams = {k: a for k, a in after.by_key.items() if a.stage == "exam"}
    assert {k: a.output for k, a in after.by_key.items() if a.stage != "exam"} == \
        {k: a.output for k, a in before.by_key.items()}  # no existing key changes
    evaluated = {a.spec["run"] for a in after.evals.values() if "run" in a.spec}
    assert sorted(a.spec["run"] for a in exams.values() if "run" in a.spec) == sorted(evaluated)
    assert sum("base" in a.spec for a in exams.values()) == len(after.base_evals)
    contexts = artifact_contexts(after)
    for art in exams.values():
        assert len(art.spec["exams"]["exam_legal"]) == 2  # digests of the task YAML and of its data file
        for path in [("exams", "exam_legal", 0), ("exams", "exam_legal", 1), ("tokenizer",), ("batch_size",)]:
            assert spec_source(after.cfg, "exam", contexts.get(art.key, {}), path, True)[0] != SPEC


def test_explain_names_a_changed_exam_data_file(tmp_path: Path) -> None:
    import shutil

    from test_explain import _explain_new, _plan, _raw, _write_specs

    shutil.copytree(REPO / "data" / "demo" / "exams", tmp_path / "exams")
    task = tmp_path / "exams" / "exam_legal.yaml"
    raw = _with_exam(_raw(), task)
    _write_specs(_plan(raw, tmp_path))
    data = tmp_path / "exams" / "exam_legal.jsonl"
    lines = data.read_text().splitlines()
    first = json.loads(lines[0])
    first["answer"] = (first["answer"] + 1) % len(first["choices"])
    data.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    changed = _explain_new(_plan(raw, tmp_path), tmp_path)
    assert changed and all(k.startswith("exam/") for k in changed)
    assert {(frozenset(keys), frozenset(files)) for keys, files, _, _ in changed.values()} == \
        {(frozenset(), frozenset({str(data)}))}
    assert len(changed) == len(_plan(raw, tmp_path).all_exams())


def test_specialization_figure_gains_an_exam_panel_at_the_best_checkpoints() -> None:
    import pandas as pd

    from cpt_scaling.figures.specialization import build_ppl_figure, exam_accuracy

    table = pd.DataFrame({"size": ["xs", "s", "xs", "s"], "N": [100, 400, 100, 400],
                          "role": ["specialist", "specialist", "general", "general"], "ratio": [1.0, 1.0, 0.0, 0.0],
                          "budget": [4096] * 4, "best_D": [2048, 4096, 4096, 1024], "perplexity": [9.0, 7.0, 11, 8]})
    rows = []
    for size, ratio in [("xs", 1.0), ("s", 1.0), ("xs", 0.0), ("s", 0.0)]:
        for d in (1024, 2048, 4096):
            for metric in ("acc", "acc_norm"):  # acc encodes (size, ratio, D) so the join is checked exactly
                rows.append({"kind": "cpt", "size": size, "ratio": ratio, "budget": 4096, "D": d, "suite": "ex",
                             "metric": metric, "value": (d / 4096) * (0.5 if size == "xs" else 1) * (ratio + 1) / 2
                             if metric == "acc" else -1.0, "n_questions": 16})
    rows.append({"kind": "cpt", "size": "s", "ratio": 1.0, "budget": 4096, "D": 4096, "suite": "legal",
                 "split": "test", "metric": "loss", "value": 3.0, "n_questions": None})
    scores = exam_accuracy(table, pd.DataFrame(rows))
    got = {(r.size, r.role): r.acc for r in scores.itertuples()}
    assert got == {("xs", "specialist"): 0.25, ("s", "specialist"): 1.0, ("xs", "general"): 0.25,
                   ("s", "general"): 0.125}
    law = {"domain": "legal", "specialist_ratio": 1.0}
    assert len(build_ppl_figure(law, table, pd.DataFrame(rows)).axes) == 2
    assert len(build_ppl_figure(law, table).axes) == 1
