"""SLURM resources from the cost model, checked on the sbatch line the SLURM plugin builds from them."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from workflow_utils import REPO

from cpt_scaling.config.load import load_config
from cpt_scaling.cost.host_memory import train_mem_mb
from cpt_scaling.cost.resources import train_resource_names, train_resources, train_state_bytes
from cpt_scaling.plan.sweep import build_plan

CPU = {"gpus_per_job": 0, "nodes_per_job": 1, "peak_flops_per_gpu": 9.89e14, "expected_mfu": 0.4,
       "cpu_flops": 2.0e10, "mem_mb": 4000, "runtime_margin": 2.0, "cpus_per_gpu": 8, "gpu_model": None}


class _Resources(dict):
    """The attribute-and-get access the plugin uses on ``job.resources``."""

    __getattr__ = dict.__getitem__


def sbatch_line(res: dict[str, Any], threads: int = 1) -> str:
    """The sbatch command (with its GPU part) the plugin would submit for a job with these resources."""
    job = SimpleNamespace(resources=_Resources(res), threads=threads, name="train", is_group=lambda: False)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "", "partition": "",
              "workdir": None}
    return get_submit_command(job, params) + set_gres_string(job)


def test_cpu_only_cluster_gets_no_gpu_request() -> None:
    res = train_resources(6.0e12, CPU, {}, threads=2)
    assert res == {"mem_mb": 4000, "runtime": math.ceil(6.0e12 / 2.0e10 / 60 * 2.0) + 5, "cpus_per_task": 2,
                   "submissions": 1, "stop_margin_s": 120, "slurm_extra": "--signal=TERM@120"}
    line = sbatch_line(res, threads=2)
    assert "gpu" not in line and "--gres" not in line
    assert "--cpus-per-task=2" in line and "--mem 4000" in line and "-t 15" in line


def test_single_node_gpu_job() -> None:
    cost = {**CPU, "gpus_per_job": 8, "mem_mb": 480000}
    flops = 8 * 9.89e14 * 0.4 * 3600  # one hour on 8 GPUs
    res = train_resources(flops, cost, {"partition": "gpu", "account": "proj"})
    assert res["runtime"] == 2 * 60 + 5
    assert res["gres"] == "gpu:8" and res["cpus_per_task"] == 64
    line = sbatch_line(res)
    assert "--gres=gpu:8" in line and "--ntasks-per-gpu" not in line and "--nodes" not in line
    assert res["slurm_partition"] == "gpu" and res["slurm_account"] == "proj"


def test_multi_node_job_launches_srun_one_task_per_node() -> None:
    cost = {**CPU, "gpus_per_job": 16, "nodes_per_job": 2, "gpu_model": "h100"}
    res = train_resources(1e21, cost)
    assert res["mpi"] == "srun" and res["nodes"] == 2 and res["tasks"] == 2
    line = sbatch_line(res)
    assert "--nodes=2" in line and "--ntasks-per-node=1" in line and "--gres=gpu:h100:8" in line
    with pytest.raises(ValueError, match="nodes_per_job"):
        train_resources(1e21, {**cost, "gpus_per_job": 12, "nodes_per_job": 5})


def test_resource_names_are_fixed_per_config() -> None:
    assert train_resource_names(CPU) == ["mem_mb", "runtime", "submissions", "stop_margin_s", "cpus_per_task",
                                         "slurm_extra"]
    assert "gres" in train_resource_names({**CPU, "gpus_per_job": 2})


def test_plan_train_resources_use_the_cost_model(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    cfg = load_config("config/demo.yaml")
    cfg["cost"].update(gpus_per_job=4)
    plan = build_plan(cfg, tmp_path / "digests.json")
    key = next(a.key for a in plan.by_key.values() if a.stage == "train")
    res = plan.train_resources(key)
    assert res == train_resources(plan.train_flops(key), cfg["cost"], cfg["cluster"], 1,
                                  train_state_bytes(cfg, plan.size_of[key]), train_mem_mb(cfg, plan.size_of[key]))
    assert res["mem_mb"] == max(cfg["cost"]["mem_mb"], train_mem_mb(cfg, plan.size_of[key])) > 4000
    assert res["gres"] == "gpu:4" and set(res) == set(plan.train_resource_names())


def test_processes_per_node_follow_the_gpus_and_a_mismatch_is_a_config_error(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from cpt_scaling.config.load import normalise_config, read_config_file
    from cpt_scaling.core.errors import InputError

    monkeypatch.chdir(REPO)
    raw = read_config_file("config/demo.yaml")
    assert normalise_config(raw, "demo.yaml")["training"]["processes_per_node"] == 1  # no GPUs: one process
    raw["cost"] = {"gpus_per_job": 8, "nodes_per_job": 2}
    assert normalise_config(raw, "demo.yaml")["training"]["processes_per_node"] == 4  # one per GPU of a node
    raw.setdefault("training", {})["processes_per_node"] = 4
    assert normalise_config(raw, "demo.yaml")["training"]["processes_per_node"] == 4
    raw["training"]["processes_per_node"] = 8
    with pytest.raises(InputError, match=r"demo.yaml: training.processes_per_node=8 does not match the 4 GPUs"):
        normalise_config(raw, "demo.yaml")


def test_eval_resources_from_the_cost_model() -> None:
    from cpt_scaling.cost.resources import LOAD_BYTES_PER_SECOND, eval_resources

    gpu = {**CPU, "gpus_per_job": 8, "gpu_model": "h100"}
    flops, load = 9.89e14 * 0.4 * 1800, 3600 * LOAD_BYTES_PER_SECOND  # 30 min of compute, 1 h of reading
    res = eval_resources(flops, 30e9, load, gpu, {"partition": "gpu"})
    assert res["gres"] == "gpu:h100:1" and res["cpus_per_task"] == 8 and res["slurm_partition"] == "gpu"
    assert res["runtime"] == math.ceil(90 * 2.0) + 5 and res["mem_mb"] == math.ceil(30e9 / 2**20)
    cpu = eval_resources(6.0e12, 1e6, 0.0, CPU, {"partition": "gpu"}, threads=3)
    assert cpu == {"mem_mb": 4000, "runtime": math.ceil(6.0e12 / 2.0e10 / 60 * 2.0) + 5, "cpus_per_task": 3}
    assert "--gres" not in sbatch_line(cpu, threads=3)


def test_paper_dry_run_submits_8_gpu_8_process_training_and_1_gpu_evaluation(tmp_path: Any) -> None:
    """Must-show 5: the jobs of a dry run of config/examples/paper_qwen.yaml through profiles/slurm, with the
    resources Snakemake evaluates for each, turned into sbatch lines by the SLURM plugin."""
    import shutil

    from conftest import make_workdir

    from cpt_scaling.dryrun.cost_report import read_profile, snakemake_needrun
    from cpt_scaling.train.launch import launch_command

    workdir = make_workdir(tmp_path / "w")
    shutil.copy(REPO / "config" / "examples" / "paper_qwen.yaml", workdir / "paper.yaml")
    jobs, _ = snakemake_needrun([], snakefile=REPO / "Snakefile", workdir=workdir, configfiles=["paper.yaml"],
                                profile=read_profile(REPO / "profiles" / "slurm"))
    train = [res for _, rule, _, _, _, res in jobs if rule == "train"]
    evals = [res for _, rule, _, _, _, res in jobs if rule == "evaluate"]
    assert len(train) >= 400 and len(evals) >= 400  # every run (WSD trunks and branches: more jobs)
    for res in train:
        assert res["gres"] == "gpu:8" and res["processes_per_node"] == 8 and res["cpus_per_task"] == 64
        line = sbatch_line(res)
        assert "--gres=gpu:8" in line and "--ntasks-per-gpu" not in line and "--nodes" not in line
    cmd = launch_command(tmp_path / "spec.json", tmp_path / "out", processes_per_node=train[0]["processes_per_node"],
                         nodes=train[0].get("nodes", 1))
    assert cmd[cmd.index("--nproc_per_node") + 1] == "8"
    for res in evals:
        assert res["gres"] == "gpu:1" and res["cpus_per_task"] == 8
        assert 4000 <= res["mem_mb"] < 100_000 and 5 < res["runtime"] < 24 * 60
        line = sbatch_line(res)
        assert "--gres=gpu:1" in line and f"--mem {res['mem_mb']}" in line and f"-t {res['runtime']}" in line
    print(f"train: {sbatch_line(train[0])}\neval: {sbatch_line(max(evals, key=lambda r: r['runtime']))}")
