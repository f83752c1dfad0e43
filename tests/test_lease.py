"""One writer per artifact (leases, with the stale-lease rule) and jobs that stop when their Snakemake is gone."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cpt_scaling.core.digests import verify_tree
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.lease import STALE_AFTER_S, artifact_lease, lease_path

HOLD = textwrap.dedent("""
    import sys, time
    from cpt_scaling.core.lease import artifact_lease
    with artifact_lease(sys.argv[1], wait_s=60, poll_s=0.05):
        print(f"taken {time.time()}", flush=True)
        time.sleep(float(sys.argv[2]))
        print(f"released {time.time()}", flush=True)
""")


def _holder(artifact: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(artifact), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.startswith("taken"), line
    return proc


def test_a_second_writer_waits_for_the_first_and_never_overlaps(tmp_path: Path) -> None:
    artifact = tmp_path / "train" / "run-0123456789abcdef"
    first = _holder(artifact, 1.5)
    with artifact_lease(artifact, wait_s=30, poll_s=0.05):
        taken = time.time()
        holder = json.loads(lease_path(artifact).read_text())
        assert holder["pid"] == os.getpid()
    out, _ = first.communicate(timeout=30)
    released = float(out.split()[-1])
    assert taken >= released
    assert not lease_path(artifact).exists()


def test_a_live_holder_past_the_wait_is_one_error_naming_it(tmp_path: Path) -> None:
    artifact = tmp_path / "shards" / "legal-0123456789abcdef"
    first = _holder(artifact, 5)
    try:
        with pytest.raises(InputError) as info, artifact_lease(artifact, wait_s=0.3, poll_s=0.05):
            pass
        message = str(info.value)
        assert message.startswith(f"{artifact}: another job writes this artifact: pid {first.pid} on ")
        assert "waited 0 s" in message and "\n" not in message
        assert json.loads(lease_path(artifact).read_text())["pid"] == first.pid  # left to its holder
    finally:
        first.kill()
        first.wait()


def test_a_lease_whose_holder_died_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    artifact = tmp_path / "classifier" / "fasttext-0123456789abcdef"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease_path(artifact).parent.mkdir(parents=True)
    lease_path(artifact).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": "1",
                                                "workdir": "/elsewhere", "since": 0}))
    with caplog.at_level("WARNING"), artifact_lease(artifact, wait_s=0, poll_s=0.05):
        assert json.loads(lease_path(artifact).read_text())["pid"] == os.getpid()
    assert "its holder is gone" in caplog.text


def test_another_hosts_lease_is_stale_only_when_its_heartbeat_is(tmp_path: Path) -> None:
    artifact = tmp_path / "train" / "run-fedcba9876543210"
    path = lease_path(artifact)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "start": "1", "workdir": "/w", "since": 0}))
    with pytest.raises(InputError, match="node-elsewhere"), artifact_lease(artifact, wait_s=0.2, poll_s=0.05):
        pass
    old = time.time() - STALE_AFTER_S - 5
    os.utime(path, (old, old))
    with artifact_lease(artifact, wait_s=0, poll_s=0.05):
        assert json.loads(path.read_text())["host"] == socket.gethostname()


ORPHAN = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from cpt_scaling.core.orphans import stop_when_orphaned
    signal.signal(signal.SIGUSR1, lambda *_: (Path(sys.argv[1]).write_text(str(time.time())), sys.exit(75)))
    stop_when_orphaned(poll_s=0.1)
    Path(sys.argv[1] + ".ready").write_text("")
    time.sleep(60)
""")
PARENT = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]]); " \
         "time.sleep(60)"


def test_a_job_whose_parent_is_killed_stops_itself(tmp_path: Path) -> None:
    """SIGKILL of the job's parent (Snakemake): the job gets SIGUSR1 (a trainer's graceful stop) within a poll."""
    flag = tmp_path / "stopped"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, ORPHAN, str(flag)])
    deadline = time.time() + 30
    while not Path(f"{flag}.ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    killed = time.time()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the orphaned job did not stop"
    assert float(flag.read_text()) - killed < 2.0


def _holder_of(lease: Path) -> dict | None:
    """The lease's holder once it is readable (None while absent or being written)."""
    try:
        return json.loads(lease.read_text())
    except (OSError, ValueError):
        return None


def _log_time(log: Path, text: str) -> datetime.datetime:
    """The time stamp of the first line of a job log that contains ``text``."""
    line = next(line for line in log.read_text().splitlines() if text in line)
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.slow  # two real Snakemake processes (about a minute on 2 busy cores)
def test_two_checkouts_on_one_artifacts_dir_never_write_an_artifact_at_once(tmp_path: Path) -> None:
    """Checkout a's Snakemake runs the classifier job into a shared artifacts_dir; checkout b's, started while it
    runs (its job held stopped, so the overlap is certain), sees no records of its own and runs the same job: that
    job waits for a's lease, naming a's job and checkout, and writes only after a's has released it."""
    import yaml
    from reliability_utils import kill_group, log_says, start_snakemake, wait_until
    from workflow_utils import REPO, plan_in

    cfg = yaml.safe_load((REPO / "tests" / "configs" / "micro.yaml").read_text())
    cfg["artifacts_dir"] = str(tmp_path / "shared" / "artifacts")
    checkouts = [tmp_path / "checkout-a", tmp_path / "checkout-b"]
    for checkout in checkouts:
        checkout.mkdir()
        (checkout / "data").symlink_to(REPO / "data")
        (checkout / "micro.yaml").write_text(yaml.safe_dump(cfg))
    a, b = checkouts
    classifier = plan_in(a, "micro.yaml").classifier
    assert classifier is not None and classifier.output == plan_in(b, "micro.yaml").classifier.output
    lease = lease_path(Path(classifier.dir))
    first = start_snakemake(a, "micro.yaml", classifier.output, log_name="a")
    second = None
    try:
        holder = wait_until(lambda: _holder_of(lease), first, "checkout a's job taking the lease", timeout=300)
        os.kill(holder["pid"], signal.SIGSTOP)  # a's job holds the artifact for as long as b needs to start
        second = start_snakemake(b, "micro.yaml", classifier.output, log_name="b")
        waiting = wait_until(lambda: log_says(b, "classifier/*.log", f"waiting for pid {holder['pid']} on "),
                             second, "checkout b's job waiting for a's", timeout=300)
        assert f"(in {a})" in waiting.read_text()
        os.kill(holder["pid"], signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (a / "a.out").read_text()[-3000:]
        assert second.wait(timeout=300) == 0, (b / "b.out").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                kill_group(proc)
    job_log = f"classifier/{Path(classifier.dir).name}.log"
    released = _log_time(a / "logs" / job_log, f"lease of {classifier.dir} released")
    taken = _log_time(b / "logs" / job_log, f"lease of {classifier.dir} taken")
    assert taken >= released
    assert verify_tree(classifier.dir)[1] == [] and not lease.exists()
