"""Content digests: every keyed job records what it wrote; a flipped bit in weights or a token store is named by
the next whole read (loading a checkpoint) and by ``cpt-scaling verify``, with the command that redoes it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cpt_scaling.core.digests import RECORD, STAMPS, BackgroundCheck, record_digests, verify_file, verify_tree
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
    (art / "train.u32").write_bytes(b"cut")
    with pytest.raises(InputError, match=f"^{art / 'train.u32'}: truncated: 3 of the 16384 bytes recorded"):
        verify_file(art / "train.u32")
    (art / "sub" / "manifest.json").unlink()
    assert {d.problem for d in verify_tree(art)[1]} >= {"missing"}


def _check(stores: list[Path]) -> BackgroundCheck:
    check = BackgroundCheck(stores)
    check.raise_if_damaged(wait=True)
    return check


def test_a_token_store_is_hashed_once_until_rewritten_and_verify_still_hashes_it(tmp_path: Path) -> None:
    """The first training start hashes a store whole and stamps it (outside the artifact: its record and digests
    are unchanged); later starts skip the hash while path, size, mtime and inode match. A store rewritten with a
    new mtime is hashed again and its damage named; a bit flip whose size, mtime and inode are restored is not
    hashed at start (the stated limit), and ``verify`` still names it."""
    art = tmp_path / "artifacts" / "shards" / "legal-0123456789abcdef"
    art.mkdir(parents=True)
    stores = [art / "a.u32", art / "b.u32"]
    for store in stores:
        store.write_bytes(bytes(range(256)) * 64)
    record = record_digests(art)
    assert _check(stores).hashed == stores
    stamps = tmp_path / "artifacts" / STAMPS
    assert sorted(p.name for p in stamps.iterdir()) == [  # flat: no folder that looks like an artifact
        "shards--legal-0123456789abcdef--a.u32.json", "shards--legal-0123456789abcdef--b.u32.json"]
    assert record_digests(art) == record and verify_tree(tmp_path / "artifacts") == (2, [])
    assert _check(stores).hashed == []  # stamped: not read again

    a, b = (store.stat() for store in stores)
    for store in stores:
        _flip(store)  # rewritten in place: same size and inode
    os.utime(stores[0], ns=(a.st_atime_ns, a.st_mtime_ns))  # a's mtime restored
    os.utime(stores[1], ns=(b.st_atime_ns, b.st_mtime_ns + 10**9))  # b's changed
    assert stores[0].stat().st_ino == a.st_ino
    check = BackgroundCheck(stores)
    with pytest.raises(InputError, match=f"^{stores[1]}: content differs from the sha256 recorded"):
        check.raise_if_damaged(wait=True)  # a (checked first) passed unhashed; b was hashed and failed
    assert check.hashed == []
    checked, damaged = verify_tree(tmp_path / "artifacts")
    assert checked == 2 and sorted(d.file for d in damaged) == ["a.u32", "b.u32"]


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


def _saved_checkpoint(out: Path) -> Path:
    """A real checkpoint with its train state: a tiny Llama after one AdamW step, saved as the trainer saves."""
    import torch

    from cpt_scaling.train import checkpoints as ckpt
    from cpt_scaling.train.model import build_model

    torch.manual_seed(0)
    model = build_model({"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32}, 64, 16, attention="sdpa")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.arange(16).reshape(1, 16)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    state = {"step": 1, "tokens": 16, "digest": "d" * 64, "world_size": 1}
    return ckpt.save_checkpoint(out, 16, model, optimizer, state, rank=0), optimizer


def test_a_flipped_bit_in_a_train_state_is_named_on_resume_and_by_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Resuming reads the weights, ``state.json`` and the rank's state file whole: each is checked against the
    digests the save recorded (also before the job that writes the run has finished)."""
    from cpt_scaling.cli.main import main
    from cpt_scaling.train import checkpoints as ckpt

    run = tmp_path / "artifacts" / "train" / "cpt-0123456789abcdef"
    path, optimizer = _saved_checkpoint(run)
    recorded = json.loads((path / RECORD).read_text())["files"]
    assert {"model.safetensors", "train_state/state.json", "train_state/rank-00000.safetensors",
            "train_state/rank-00000.json"} <= set(recorded)
    assert ckpt.resumable_checkpoint(run) == (path, {"step": 1, "tokens": 16, "digest": "d" * 64, "world_size": 1})
    ckpt.restore_train_state(path, optimizer, 0, 1)  # intact: restores

    rank_file = path / ckpt.TRAIN_STATE / "rank-00000.safetensors"
    _flip(rank_file, offset=rank_file.stat().st_size - 8)  # inside the last tensor: the file still parses
    with pytest.raises(InputError) as info:
        ckpt.restore_train_state(path, optimizer, 0, 1)
    assert str(info.value).startswith(f"{rank_file}: content differs from the sha256 recorded when it was written")
    state_file = path / ckpt.TRAIN_STATE / "state.json"
    state_file.write_text(state_file.read_text().replace('"step": 1', '"step": 0'))  # one bit: still valid JSON
    with pytest.raises(InputError, match=f"^{state_file}: content differs"):
        ckpt.resumable_checkpoint(run)
    assert main(["verify", str(tmp_path / "artifacts")]) == 1
    err = capsys.readouterr().err
    assert sorted(line.split(":")[0] for line in err.splitlines()) == sorted([f"DAMAGED {state_file}",
                                                                              f"DAMAGED {rank_file}"])
    assert f"remove {path} and redo it with: snakemake --forcerun {run / 'spec.json'}" in err  # the run's job
    ckpt.drop_train_state(path)  # a superseded state is removed with its record entries: nothing left damaged
    assert verify_tree(run) == (len([f for f in recorded if not f.startswith("train_state/")]), [])


def test_a_flipped_bit_in_a_token_store_fails_the_training_job_that_reads_it(tmp_path: Path) -> None:
    """Training memory-maps the token stores (no whole read at start); it checks them in the background and the
    job fails naming the damaged file before it writes its result."""
    from tiny_shards import make_shards, tiny_spec

    from cpt_scaling.train.trainer import RESULT, train

    general = make_shards(tmp_path / "shards" / "general-0123456789abcdef", domain=False)
    record_digests(general)  # as the shards job records it
    _flip(general / "train.u32")
    out = tmp_path / "train" / "run"
    with pytest.raises(InputError) as info:
        train(tiny_spec(general, None, tokens=4 * 8 * 32), out)
    assert str(info.value).startswith(f"{general / 'train.u32'}: content differs from the sha256 recorded")
    assert not (out / RESULT).exists()
