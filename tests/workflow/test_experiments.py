"""Replicas over seeds and a sweep, planned by Snakemake and carried through to the report
on the tiny demo: the dry-run lists every replica and sweep point, a fourth seed adds
only its own jobs, and the report summarises each family of replicas."""

import yaml
from helpers import REPO
from helpers.workflow_runs import demo_config, planned_jobs, write_config

SEEDS = [1, 2, 3]
GRID = {"lr_per_256": [0.1, 0.4], "label_smoothing": [0.0, 0.1]}


def experiment_config(config, seeds=SEEDS):
    """`config` with its run replicated over `seeds` and a 2x2 sweep of one seed."""
    config["training"]["runs"] = {"cpu_fp32": {"seeds": list(seeds)}}
    config["training"]["sweeps"] = {
        "lr_study": {"base": "cpu_fp32", "settings": {"seed": 1}, "grid": GRID}
    }
    return config


def expected_plan(config, runs, exported):
    """The jobs of a first run of `config` with `runs` training runs, `exported` of them
    exported to ONNX."""
    jobs = planned_jobs_of_demo(config)
    jobs.update(train=runs, score=runs, export_onnx=exported, score_onnx=exported)
    return jobs


def planned_jobs_of_demo(config):
    """The demo's jobs but training, scoring and the ONNX export."""
    infer = config["benchmark"]["infer"]["batch_sizes"]
    return {
        "demo_dataset": 1,
        "make_classes": 1,
        "make_list": 2,
        "pack_records": 2,
        "bench_train": 1,
        "bench_infer": sum(len(sizes) for sizes in infer.values()),
        "bench_summary": 1,
        "bench_infer_onnx": len(infer["float32"]) if config["onnx"]["benchmark"] else 0,
        "report": 1,
        "all": 1,
    }


def test_the_dry_run_lists_every_replica_and_sweep_point(workflow_dir):
    config = experiment_config(demo_config())
    write_config(workflow_dir / "experiments.yaml", config)
    jobs = planned_jobs(workflow_dir, "--configfile", "experiments.yaml")
    # 3 replicas and 4 sweep points; the first replica and every point are exported.
    assert jobs == expected_plan(config, runs=3 + 4, exported=1 + 4)


def test_the_shipped_experiments_config_adds_to_the_demo(workflow_dir):
    experiments = yaml.safe_load((REPO / "config" / "experiments.yaml").read_text())
    runs = experiments["training"]["runs"]["cpu_fp32"]["seeds"]
    points = 1
    for values in experiments["training"]["sweeps"]["lr_study"]["grid"].values():
        points *= len(values)
    jobs = planned_jobs(workflow_dir, "--configfile", "config/demo.yaml", "config/experiments.yaml")
    assert (jobs["train"], jobs["score"]) == (len(runs) + points, len(runs) + points)
    assert jobs["export_onnx"] == 1 + points
