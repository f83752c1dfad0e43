"""Benchmark: parse + DAG + cost report of a sweep of >= 10,000 training jobs, against Snakemake's dry run
of a toy Snakefile with as many trivial jobs; and the time one cluster job spends before its command starts.

    .venv/bin/python bench/bench_dag.py [--sizes 10 --ratios 21 --budgets 17] [--full]
    .venv/bin/python bench/bench_dag.py --scaling [--jobs 10000,30000,100000] [--max-mb 6000] [--parallel]

Each measurement is one run in a fresh subprocess (interpreter start and imports included), in a scratch
working directory with a link to data/demo. Targets: ours <= 1.5x the toy and <= 20 s; one job's parse +
one-job DAG <= 1 s. ``--full`` also prices the whole default target (training plus evaluation jobs) against a
toy of that size.

``--scaling``: the dry run (``snakemake -n`` of the default target: training, evaluation, fits, figures) of
sweeps of about 10k, 30k and 100k jobs (10 sizes x 3 domains x 21 ratios x as many CPT budgets as it takes), each
in a fresh process: its wall and CPU seconds and peak RSS, per thousand jobs, one line per size
(``jobs=... dag_s_per_kjob=... dag_mb_per_kjob=...``); the last line gives the marginal cost per thousand jobs
between the smallest and the largest size, and how much the marginal cost of the upper interval exceeds the lower
one's (``growth``: 1.0 is linear). A dry run above ``--max-mb`` is stopped and reported. The parse must print
the large-sweep warning exactly when the plan counts more than ``LARGE_SWEEP_JOBS`` artifact jobs
(``warnings_right=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SNAKEMAKE = str(Path(PY).with_name("snakemake"))
TOY = """rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule make:
    output: "out/{{i}}.txt"
    shell: "touch {{output}}"
"""

# The same number of training jobs with the shape of ours: three inputs each (a pretraining run, the general and
# a domain shard manifest), two outputs, two ~600-character params, log, benchmark, resources, conda directive.
SHAPED_TOY = """N, SIZES, DOMS = {n}, {sizes}, ["a", "b", "c"]

def inputs_of(wc):
    i = int(wc.key)
    return [f"pt/{{i % SIZES}}.txt", "shards/general.txt", f"shards/{{DOMS[i % 3]}}.txt"]

def job_of(wc):
    return '{{"run": ' + wc.key + ', "pad": "' + "p" * 600 + '"}}'

rule all:
    input: expand("train/{{key}}/ck.txt", key=range(N))

rule shards:
    output: "shards/{{d}}.txt"
    shell: "touch {{output}}"

rule pt:
    output: "pt/{{s}}.txt"
    shell: "touch {{output}}"

rule train:
    input: inputs_of
    output: ck="train/{{key}}/ck.txt", spec="train/{{key}}/spec.json"
    params: job=job_of, spec=job_of
    resources: mem_mb=4000, runtime=10
    log: "logs/train/{{key}}.log"
    benchmark: "logs/bench/{{key}}.tsv"
    conda: "{env}"
    shell: "touch {{output}}"
"""


def sweep_config(sizes: int, ratios: int, budgets: int) -> dict:
    """A config of ``sizes`` from-scratch models x 3 domains x ``ratios`` ratios x ``budgets`` CPT budgets."""
    classes = ["general", "legal", "medical", "accounting"]
    rs = [round(i / (ratios - 1), 4) for i in range(ratios)]
    return {
        "data": {"seeds": {c: [f"data/demo/seeds/{c}.jsonl.gz"] for c in classes},
                 "pool": ["data/demo/pool/*.jsonl.gz"]},
        "domains": {d: {"ratios": rs} for d in classes[1:]},
        "models": {"sizes": {f"s{i}": {"n_layers": 1 + i % 4, "d_model": 32 * (i + 1), "n_heads": 2,
                                       "d_ff": 128 * (i + 1)} for i in range(sizes)}},
        "pretrain": {"tokens": 262144},
        "cpt": {"tokens": [2048 * (k + 1) for k in range(budgets)]},
    }


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of one subprocess run (fails loudly)."""
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd[:6])}...\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return dt, res.stdout


def child_cost(workdir: str, targets_file: str) -> None:
    """Child process: the cost report of the targets listed in a file (one per line; none: default)."""
    from cpt_scaling.dryrun.cost_report import cost_report

    targets = [t for t in Path(targets_file).read_text().splitlines() if t]
    report = cost_report(targets, snakefile=REPO / "Snakefile", workdir=workdir, configfiles=["sweep.yaml"],
                         profile=REPO / "profiles" / "slurm")
    print(json.dumps(report.totals))


def child_one(workdir: str, target: str) -> None:
    """Child process: what one cluster job pays before its command: parse, then a one-job DAG."""
    t0 = time.perf_counter()
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    t1 = time.perf_counter()
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL, Quietness.PROGRESS, Quietness.RULES})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=REPO / "Snakefile",
                          config_settings=ConfigSettings(configfiles=(Path(workdir) / "sweep.yaml",)),
                          workdir=Path(workdir))
        dag_api = wf.dag(DAGSettings(targets=frozenset([target])))
        workflow = dag_api.workflow_api._workflow  # parses the Snakefile (config, plan, rules)
        t2 = time.perf_counter()
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        t3 = time.perf_counter()
        jobs = len(list(workflow.dag.needrun_jobs()))
    print(json.dumps({"import_s": t1 - t0, "parse_s": t2 - t1, "dag_s": t3 - t2, "jobs": jobs}))


def plan_seconds(workdir: Path) -> tuple[float, float, int, list[str]]:
    """(config load s, plan build s, artifacts, training outputs) measured in this process."""
    import os

    from cpt_scaling.config.load import load_config
    from cpt_scaling.plan.sweep import build_plan

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        build_plan(load_config("sweep.yaml"))  # warm the raw-input digest cache, as a cluster job finds it
        t0 = time.perf_counter()
        cfg = load_config("sweep.yaml")
        t1 = time.perf_counter()
        plan = build_plan(cfg)
        n_artifacts = len(plan.by_key)  # the evaluation stage is built on first use: include it
        t2 = time.perf_counter()
    finally:
        os.chdir(cwd)
    return t1 - t0, t2 - t1, n_artifacts, plan.outputs("train")


def compare(label: str, workdir: Path, targets: list[str], shaped_sizes: int = 0) -> dict:
    """Ours (cost report of ``targets``) vs the toy dry run of as many jobs; prints the numbers."""
    tfile = workdir / f"targets-{label}.txt"
    tfile.write_text("\n".join(targets))
    ours, out = timed([PY, __file__, "--child-cost", str(workdir), str(tfile)], REPO)
    totals = json.loads(out.splitlines()[-1])
    toy = toy_dry_run(TOY.format(n=totals["jobs"] - 1))
    ratio = ours / toy
    met = "met" if ours <= 20 else "NOT met"
    print(f"[{label}] ours: parse + DAG + cost report of {totals['jobs']} jobs "
          f"({totals['train_jobs']} training): {ours:.2f} s | toy `snakemake -n --quiet`, {totals['jobs']} "
          f"trivial jobs: {toy:.2f} s | ratio {ratio:.2f} (target <= 1.5) | absolute target <= 20 s: {met}")
    result = {"label": label, "jobs": totals["jobs"], "train_jobs": totals["train_jobs"], "ours_s": ours,
              "toy_s": toy, "ratio": ratio}
    if shaped_sizes:
        shaped = toy_dry_run(SHAPED_TOY.format(n=totals["train_jobs"], sizes=shaped_sizes,
                                               env=REPO / "envs" / "cpt-scaling.yaml"))
        print(f"[{label}] shaped toy (as many training jobs with our jobs' inputs, outputs, params, log, "
              f"benchmark, resources, conda): {shaped:.2f} s | ours / shaped toy {ours / shaped:.2f}")
        result.update(shaped_s=shaped, shaped_ratio=ours / shaped)
    return result


def toy_dry_run(snakefile: str) -> float:
    """Wall seconds of ``snakemake -n --quiet`` of a Snakefile's default target, in a fresh directory."""
    toy_dir = Path(tempfile.mkdtemp(prefix="toy-"))
    (toy_dir / "Snakefile").write_text(snakefile)
    seconds, _ = timed([SNAKEMAKE, "-n", "--quiet", "--cores", "1", "--snakefile", str(toy_dir / "Snakefile"),
                        "--directory", str(toy_dir)], toy_dir)
    return seconds


def scratch_workdir(config: dict) -> Path:
    """A fresh working directory with ``sweep.yaml`` and a link to data/demo."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-dag-"))
    (workdir / "data").mkdir()
    (workdir / "data" / "demo").symlink_to(REPO / "data" / "demo")
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    return workdir


def planned_jobs(config: dict) -> int:
    """Artifact jobs the plan counts for ``config`` (built in this process, as the parse does)."""
    from cpt_scaling.config.load import normalise_config
    from cpt_scaling.plan.sweep import build_plan

    workdir = scratch_workdir(config)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return len(build_plan(normalise_config(config, "sweep.yaml"), workdir / "cache.json").by_key)
    finally:
        os.chdir(cwd)


def budgets_for(jobs: int, sizes: int, ratios: int) -> tuple[int, int]:
    """CPT budgets that make a sweep of ``sizes`` x 3 domains x ``ratios`` ratios plan about ``jobs`` jobs, and
    the artifact jobs it plans."""
    one, two = (planned_jobs(sweep_config(sizes, ratios, b)) for b in (1, 2))
    budgets = max(1, round((jobs - one) / (two - one)) + 1)
    return budgets, planned_jobs(sweep_config(sizes, ratios, budgets))


def _watch_rss(pid: int, limit_mb: float, peak: list[float], stopped: list[bool]) -> None:
    """Poll a process's RSS; kill it above ``limit_mb`` (the benchmark must not take the machine's memory)."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            rss = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            return
        peak[0] = max(peak[0], rss / 1024)
        if rss / 1024 > limit_mb:
            stopped[0] = True
            os.kill(pid, 9)
            return
        time.sleep(0.5)


def dry_run(workdir: Path, limit_mb: float) -> dict:
    """``snakemake -n`` of the default target in ``workdir``: jobs, wall and CPU seconds, peak RSS (MB), whether
    the large-sweep warning showed; None for the numbers when it was stopped above ``limit_mb``."""
    cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "--cores", "1", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", "sweep.yaml"]
    log = workdir / "dry-run.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
        peak, stopped = [0.0], [False]
        watcher = threading.Thread(target=_watch_rss, args=(proc.pid, limit_mb, peak, stopped), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log.read_text()
    if stopped[0]:
        return {"stopped": True, "wall_s": wall, "peak_mb": peak[0]}
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    total = re.findall(r"^total\s+(\d+)$", text, flags=re.M)
    return {"stopped": False, "jobs": int(total[-1]), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, "warned": "large sweep:" in text}


def scaling(job_targets: list[int], sizes: int, ratios: int, limit_mb: float, parallel: bool) -> None:
    """Dry runs of sweeps of about each of ``job_targets`` jobs; per-size lines, then the marginal costs.
    ``parallel``: all sizes at once (each its own process; CPU seconds and peak RSS are per process, wall seconds
    then include the others' contention)."""
    from cpt_scaling.plan.queries import LARGE_SWEEP_JOBS

    sweeps = [(target, *budgets_for(target, sizes, ratios)) for target in job_targets]
    workdirs = [scratch_workdir(sweep_config(sizes, ratios, budgets)) for _, budgets, _ in sweeps]
    results: dict[int, dict] = {}
    if parallel:
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, dry_run(workdirs[i], limit_mb)))
                   for i in range(len(sweeps))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = []
    for i, (target, budgets, planned) in enumerate(sweeps):
        r = results[i] if parallel else dry_run(workdirs[i], limit_mb)
        dims = f"{sizes} sizes x 3 domains x {ratios} ratios x {budgets} budgets"
        if r["stopped"]:
            print(f"[~{target:,} jobs] {dims}: stopped at {r['peak_mb']:.0f} MB (over --max-mb {limit_mb:.0f}) "
                  f"after {r['wall_s']:.0f} s", flush=True)
            break
        k = r["jobs"] / 1000
        r["warning_right"] = r["warned"] == (planned > LARGE_SWEEP_JOBS)
        rows.append(r)
        print(f"[{r['jobs']:,} jobs] {dims}: dry run {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS "
              f"{r['peak_mb']:.0f} MB; large-sweep warning shown: {r['warned']} ({planned:,} artifact jobs planned, "
              f"warning above {LARGE_SWEEP_JOBS:,})", flush=True)
        print(f"jobs={r['jobs']} dag_s_per_kjob={r['cpu_s'] / k:.3f} dag_wall_s_per_kjob={r['wall_s'] / k:.3f} "
              f"dag_mb_per_kjob={r['peak_mb'] / k:.2f} warned={int(r['warned'])}", flush=True)
    if len(rows) < 2:
        raise SystemExit("fewer than two sizes finished: no slope")

    def slope(a: dict, b: dict, key: str) -> float:
        return (b[key] - a[key]) / ((b["jobs"] - a["jobs"]) / 1000)

    lo, hi = rows[0], rows[-1]
    growth_s = slope(rows[-2], hi, "cpu_s") / slope(lo, rows[1], "cpu_s") if len(rows) > 2 else 1.0
    growth_mb = slope(rows[-2], hi, "peak_mb") / slope(lo, rows[1], "peak_mb") if len(rows) > 2 else 1.0
    print(f"marginal cost {lo['jobs']:,} -> {hi['jobs']:,} jobs (CPU seconds and peak RSS per 1,000 more jobs); "
          "growth = upper interval's marginal cost / lower interval's (1.0: linear)")
    print(f"dag_s_per_kjob={slope(lo, hi, 'cpu_s'):.3f} dag_mb_per_kjob={slope(lo, hi, 'peak_mb'):.2f} "
          f"growth_s={growth_s:.2f} growth_mb={growth_mb:.2f} "
          f"warnings_right={int(all(r['warning_right'] for r in rows))}")


def main() -> None:
    """Run the benchmark and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, default=10)
    ap.add_argument("--ratios", type=int, default=21)
    ap.add_argument("--budgets", type=int, default=17)
    ap.add_argument("--full", action="store_true", help="also the whole default target (with evaluations)")
    ap.add_argument("--scaling", action="store_true", help="dry runs of ~10k, 30k and 100k jobs: cost per job")
    ap.add_argument("--jobs", default="10000,30000,100000", help="--scaling: the sweep sizes (jobs, comma-separated)")
    ap.add_argument("--max-mb", type=float, default=6000.0, help="--scaling: stop a dry run above this RSS")
    ap.add_argument("--parallel", action="store_true", help="--scaling: the sizes' dry runs at once")
    ap.add_argument("--child-cost", nargs=2, metavar=("WORKDIR", "TARGETS"), help=argparse.SUPPRESS)
    ap.add_argument("--child-one", nargs=2, metavar=("WORKDIR", "TARGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_cost:
        return child_cost(*args.child_cost)
    if args.child_one:
        return child_one(*args.child_one)
    if args.scaling:
        return scaling([int(n) for n in args.jobs.split(",")], args.sizes, args.ratios, args.max_mb, args.parallel)

    workdir = scratch_workdir(sweep_config(args.sizes, args.ratios, args.budgets))
    cfg_s, plan_s, n_art, train = plan_seconds(workdir)
    print(f"sweep: {args.sizes} sizes x 3 domains x {args.ratios} ratios x {args.budgets} budgets: "
          f"{len(train)} training jobs, {n_art} artifacts; in-process config load {cfg_s:.2f} s, "
          f"plan build {plan_s:.2f} s")
    compare("training", workdir, train, shaped_sizes=args.sizes)
    if args.full:
        compare("full", workdir, [])
    one, out = timed([PY, __file__, "--child-one", str(workdir), train[len(train) // 2]], REPO)
    parts = json.loads(out.splitlines()[-1])
    print(f"[one job] parse {parts['parse_s']:.2f} s + one-job DAG {parts['dag_s']:.2f} s = "
          f"{parts['parse_s'] + parts['dag_s']:.2f} s (target <= 1 s; snakemake import "
          f"{parts['import_s']:.2f} s; whole subprocess {one:.2f} s)")
    sm, _ = timed([SNAKEMAKE, train[len(train) // 2], "-n", "--quiet", "--cores", "1", "--snakefile",
                   str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", "sweep.yaml"],
                  workdir)
    print(f"[one job] `snakemake -n --quiet <one artifact>` wall: {sm:.2f} s")


if __name__ == "__main__":
    main()
