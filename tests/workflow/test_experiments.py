"""Replicas over seeds and a sweep, planned by Snakemake and carried through to the report
on the tiny demo: the dry-run lists every replica and sweep point, a fourth seed adds
only its own jobs, and the report summarises each family of replicas."""

import json
import statistics

import pandas as pd
import pytest
import yaml
from helpers import REPO
from helpers.workflow_runs import (
    copy_workflow,
    demo_config,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)
from PIL import Image

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


def tiny_experiment_config():
    """The tiny demo (ResNet-18 at 16 px) with 3 seeds of two epochs (a curve to draw a
    band around) and a 2x2 sweep of one epoch, without the onnxruntime points."""
    config = experiment_config(tiny_demo_config())
    config["training"]["runs"]["cpu_fp32"]["epochs"] = 2
    config["training"]["sweeps"]["lr_study"]["settings"]["epochs"] = 1
    config["input"].update(image_size=16, val_resize=16)
    config["network"]["depth"] = 18
    config["training"]["defaults"].update(log_interval=20)
    config["benchmark"]["infer"]["batch_sizes"] = {"float32": [4]}
    config["onnx"]["benchmark"] = False
    config["report"] = {"target_top1": 15.0}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workflow copy whose every output has been made from the tiny experiment config."""
    workdir = copy_workflow(tmp_path_factory.mktemp("experiments") / "workflow")
    write_config(workdir / "tiny.yaml", tiny_experiment_config())
    run_snakemake(workdir, "--configfile", "tiny.yaml", "--cores", "2")
    return workdir


def test_a_fourth_seed_plans_its_train_and_score_and_the_report(finished):
    config = tiny_experiment_config()
    config["training"]["runs"]["cpu_fp32"]["seeds"].append(4)
    write_config(finished / "four.yaml", config)
    assert planned_jobs(finished, "--configfile", "four.yaml") == {
        "train": 1,
        "score": 1,
        "report": 1,
        "all": 1,
    }


def test_the_report_summarises_the_seeds_and_draws_their_band(finished):
    report = finished / "results" / "report"
    families = pd.read_csv(report / "families.csv").set_index("family")
    replicas = families.loc["cpu_fp32"]
    assert replicas["seeds"] == "1 2 3"
    scores = [
        json.loads((finished / f"results/score/cpu_fp32.seed{seed}.json").read_text())["top1"]
        for seed in SEEDS
    ]
    top1 = [100 * value for value in scores]
    assert replicas["top1_percent_mean"] == pytest.approx(sum(top1) / 3, abs=1e-4)
    assert replicas["top1_percent_min"] == pytest.approx(min(top1), abs=1e-4)
    assert replicas["top1_percent_max"] == pytest.approx(max(top1), abs=1e-4)
    assert replicas["top1_percent_sd"] == pytest.approx(statistics.stdev(top1), abs=1e-4)
    assert len(families) == 1 + 4  # the replicas, and each sweep point alone
    text = (report / "report.md").read_text()
    assert "## Replicas, time to accuracy and cost" in text
    assert "| cpu_fp32 | 1 2 3 |" in text
    assert "mean ± sd (min to max)" in text
    accuracy = pd.read_csv(report / "accuracy.csv")
    # The swept settings and the seed are columns of the accuracy table.
    assert {"lr_per_256", "label_smoothing", "seed"} <= set(accuracy.columns)
    with Image.open(report / "validation_top1.png") as image:
        assert image.format == "PNG"
    summary = json.loads((report / "report.json").read_text())
    assert summary["target_top1_percent"] == 15.0
    assert {family["family"] for family in summary["families"]} == set(families.index)
