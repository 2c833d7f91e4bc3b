"""The workflow's plan: config validation and the jobs a dry-run lists."""

import pytest
from helpers.workflow_runs import demo_config, planned_jobs, run_snakemake, write_config


def test_demo_plan_lists_every_stage(workflow_dir):
    jobs = planned_jobs(workflow_dir)
    demo = demo_config()
    infer_points = sum(len(sizes) for sizes in demo["benchmark"]["infer"]["batch_sizes"].values())
    train_points = sum(
        len(point["gpus"]) * len(point["batch_sizes"])
        for point in demo["benchmark"]["train"]["points"].values()
    )
    assert jobs == {
        "demo_dataset": 1,
        "make_classes": 1,
        "make_list": 2,
        "pack_records": 2,
        "train": len(demo["training"]["runs"]),
        "score": len(demo["training"]["runs"]),
        "bench_train": train_points,
        "bench_infer": infer_points,
        "bench_summary": 1,
        "export_onnx": len(demo["training"]["runs"]),
        "score_onnx": len(demo["training"]["runs"]),
        "bench_infer_onnx": len(demo["benchmark"]["infer"]["batch_sizes"]["float32"]),
        "report": 1,
        "all": 1,
    }


def config_error(workflow_dir, config):
    write_config(workflow_dir / "bad.yaml", config)
    process = run_snakemake(workflow_dir, "-n", "--configfile", "bad.yaml", check=False)
    assert process.returncode != 0
    return process.stdout + process.stderr


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["training"]["defaults"].update(batch_size=64), "batch_size"),
        (lambda c: c["training"]["runs"]["cpu_fp32"].update(dtype="float8"), "float8"),
        (lambda c: c["training"]["defaults"].update(lr_per_256="fast"), "lr_per_256"),
        (lambda c: c["data"].pop("raw_dir"), "raw_dir"),
        (lambda c: c["input"].update(backend="opencv"), "backend"),
        (lambda c: c.update(trainig={}), "trainig"),
    ],
    ids=["unknown-key", "bad-enum", "wrong-type", "missing-key", "bad-backend", "typo-section"],
)
def test_config_error_names_the_key(workflow_dir, edit, key):
    config = demo_config()
    edit(config)
    message = config_error(workflow_dir, config)
    assert "Error validating config" in message or "ValidationError" in message
    assert key in message


def test_the_workflow_plans_export_parity_and_onnxruntime_points(workflow_dir):
    jobs = planned_jobs(workflow_dir)
    assert (jobs["export_onnx"], jobs["score_onnx"]) == (1, 1)
    assert jobs["bench_infer_onnx"] == 3  # the demo's float32 batch sizes 1, 8, 32


def test_a_dot_in_a_run_name_matches_only_itself(workflow_dir):
    config = demo_config()
    runs = config["training"]["runs"]
    runs["fp16.8gpu"] = runs.pop("cpu_fp32")
    write_config(workflow_dir / "dotted.yaml", config)
    planned = planned_jobs(workflow_dir, "--configfile=dotted.yaml", "results/score/fp16.8gpu.json")
    assert planned["score"] == 1
    look_alike = run_snakemake(
        workflow_dir, "-n", "--configfile=dotted.yaml", "results/score/fp16x8gpu.json", check=False
    )
    assert look_alike.returncode != 0
    assert "MissingRuleException" in look_alike.stdout + look_alike.stderr


def test_the_workflow_checks_the_config_before_its_first_job(workflow_dir):
    """The preflight check runs on start (not in a dry-run, nor as a job): the demo passes
    it; a run asking for more GPUs than --resources allows stops the workflow before any
    job (the first would be a data job)."""
    target = "results/lists/classes.tsv"
    process = run_snakemake(workflow_dir, "--cores", "1", target)
    assert "preflight: disk estimate under results/" in process.stderr
    assert "preflight: -" not in process.stderr  # no problem
    config = demo_config()
    config["training"]["runs"]["cpu_fp32"]["gpus"] = 2
    write_config(workflow_dir / "gpus.yaml", config)
    process = run_snakemake(
        workflow_dir, "--cores", "1", "--resources", "gpu=1", "--configfile=gpus.yaml",
        "results/score/cpu_fp32.json", check=False,
    )  # fmt: skip
    assert process.returncode != 0
    assert (
        "preflight: training.runs.cpu_fp32.gpus is 2, but --resources gpu=1 allows 1 GPU"
        in process.stderr
    ) or "training.runs.cpu_fp32.gpus is 2, but this machine has" in process.stderr
    assert not (workflow_dir / "results" / "lists" / "val.lst").exists()
    dry = run_snakemake(workflow_dir, "-n", "--configfile=gpus.yaml", "results/score/cpu_fp32.json")
    assert "preflight" not in dry.stderr
