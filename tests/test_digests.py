"""Content digests: every keyed job records what it wrote; a flipped bit in weights or a token store is named by
the next whole read (loading a checkpoint) and by ``cpt-scaling verify``, with the command that redoes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cpt_scaling.core.digests import RECORD, record_digests, verify_file, verify_tree
from cpt_scaling.core.errors import InputError


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_named_with_the_way_to_redo_the_artifact(tmp_path: Path) -> None:
    art = tmp_path / "artifacts" / "shards" / "legal-0123456789abcdef"
    (art / "sub").mkdir(parents=True)
    (art / "train.u32").write_bytes(bytes(range(256)) * 64)
    (art / "sub" / "manifest.json").write_text("{}")
    (art / "train_log.jsonl").write_text("{}\n")  # a growing log: not recorded
    files = record_digests(art)
    assert sorted(files) == ["sub/manifest.json", "train.u32"]
    verify_file(art / "train.u32")
    assert verify_tree(tmp_path / "artifacts") == (2, [])
    _flip(art / "train.u32")
    with pytest.raises(InputError) as info:
        verify_file(art / "train.u32")
    assert str(info.value) == (f"{art / 'train.u32'}: content differs from the sha256 recorded when it was written: "
                               f"the artifact is damaged; redo it with: snakemake --forcerun {art / 'spec.json'} "
                               "(plus your usual options)")
    checked, damaged = verify_tree(tmp_path / "artifacts")
    assert checked == 2 and [(d.artifact, d.file) for d in damaged] == [(art, "train.u32")]
    (art / "sub" / "manifest.json").unlink()
    assert {d.problem for d in verify_tree(art)[1]} >= {"missing"}


@pytest.mark.slow  # the session's micro sweep
def test_the_micro_sweep_records_digests_and_a_bit_flip_is_caught(micro_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cpt_scaling.cli.main import main
    from cpt_scaling.train.model import load_model
    from cpt_scaling.train.runs import run_checkpoint

    keyed = [d for d in (micro_run / "artifacts").glob("*/*-*") if d.is_dir()]
    assert keyed and all((d / RECORD).is_file() for d in keyed), [d for d in keyed if not (d / RECORD).is_file()]
    assert main(["verify", str(micro_run / "artifacts")]) == 0
    assert " 0 damaged" in capsys.readouterr().out

    run = next(d for d in (micro_run / "artifacts" / "train").glob("cpt-*"))
    copy = tmp_path / "artifacts" / "train" / run.name
    shutil.copytree(run, copy)
    weights = run_checkpoint(copy) / "model.safetensors"
    load_model(weights.parent)  # intact: loads
    _flip(weights, offset=weights.stat().st_size - 16)  # inside the last tensor's data: the header still parses
    with pytest.raises(InputError) as info:
        load_model(weights.parent)
    assert str(info.value).startswith(f"{weights}: content differs from the sha256 recorded")
    shards = next(d for d in (micro_run / "artifacts" / "shards").glob("legal-*"))
    shutil.copytree(shards, tmp_path / "artifacts" / "shards" / shards.name)
    _flip(tmp_path / "artifacts" / "shards" / shards.name / "train.u32")
    assert main(["verify", str(tmp_path / "artifacts")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert sorted(line.split(":")[0] for line in err) == sorted(
        [f"DAMAGED {weights}", f"DAMAGED {tmp_path / 'artifacts' / 'shards' / shards.name / 'train.u32'}"])
