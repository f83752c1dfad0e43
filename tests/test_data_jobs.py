"""The data stages' typed jobs: the plan's JSON comes back unchanged, a missing or unknown key is refused by name."""

from __future__ import annotations

import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.jobs import ClassifyJob

JOB = {"pool_file": "data/pool/a.jsonl.gz", "model": "artifacts/classifier/x", "text_column": "text",
       "id_column": "id"}


def test_round_trip() -> None:
    assert ClassifyJob.from_json(JOB).to_json() == JOB


@pytest.mark.parametrize(("change", "message"), [
    ({"model": None}, r"missing keys \['model'\]"),
    ({"modle": "x"}, r"unknown keys \['modle'\]"),
])
def test_bad_key_is_named(change: dict, message: str) -> None:
    data = {k: v for k, v in {**JOB, **change}.items() if v is not None}
    with pytest.raises(InputError, match=message):
        ClassifyJob.from_json(data)
