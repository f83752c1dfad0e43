"""The typed evaluation and exam jobs: their JSON form is the plan's job dict, and a bad one is refused by key."""

import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.jobs import EvalJob, ExamJob

EVAL = {"run_dir": "runs/r", "corpora": ["legal", "general"], "suites": {"legal:test": "s/heldout.parquet"},
        "batch_size": 4, "meta": {"run": "cpt-xs", "size": "xs", "start_tokens": 8}}
EXAM = {"checkpoint_dir": "hf/base", "tokenizer_dir": "tok", "exams": {"legal": "exams/legal.yaml"},
        "batch_size": 4, "meta": {"run": "base-xs"}}


def test_round_trip_keeps_the_dict_and_its_order() -> None:
    for cls, data in ((EvalJob, EVAL), (ExamJob, EXAM)):
        out = cls.from_json(data).to_json()
        assert out == data and list(out) == list(data)
    assert EvalJob.from_json(EVAL).checkpoint_dir is None and ExamJob.from_json(EXAM).run_dir is None


@pytest.mark.parametrize(("data", "match"), [
    ({k: v for k, v in EVAL.items() if k != "suites"}, "missing key 'suites'"),
    ({**EVAL, "checkpoint_dir": "c"}, "exactly one of keys 'run_dir'"),
    ({k: v for k, v in EVAL.items() if k != "run_dir"}, "exactly one of keys 'run_dir'"),
    ({**EVAL, "batch_size": "4"}, "key 'batch_size': expected int"),
    ({**EVAL, "suits": {}}, r"unknown keys \['suits'\]"),
    ({**EVAL, "meta": {"size": "xs"}}, "key 'meta' has no 'run'"),
])
def test_a_bad_eval_job_is_refused_naming_the_key(data: dict, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        EvalJob.from_json(data)
    assert err.value.where == "eval job"


def test_a_bad_exam_job_is_refused_naming_the_key() -> None:
    with pytest.raises(InputError, match="missing key 'tokenizer_dir'"):
        ExamJob.from_json({k: v for k, v in EXAM.items() if k != "tokenizer_dir"})
