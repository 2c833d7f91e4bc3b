"""What the workflow plans after a change of the benchmark config, on a finished tree whose
files are touched, not made: one more batch size is exactly one more job."""

import pytest
from helpers.workflow_runs import (
    copy_workflow,
    demo_config,
    planned_jobs,
    run_snakemake,
    write_config,
)


def touch_finished_tree(workdir):
    """Make every output of the demo plan exist and be up to date, with Snakemake's
    provenance records, without running anything: create each planned output (folders
    for the outputs without an extension: the demo tree and the training runs), then
    let `snakemake --touch` order their times and record their parameters and code."""
    summary = run_snakemake(workdir, "--summary").stdout.splitlines()
    header = summary.index(next(line for line in summary if line.startswith("output_file")))
    for line in summary[header + 1 :]:
        path = workdir / line.split("\t")[0]
        if "." in path.name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    run_snakemake(workdir, "--touch", "--cores", "1")


@pytest.fixture(scope="module")
def finished_tree(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("finished") / "workflow-copy")
    touch_finished_tree(workdir)
    assert planned_jobs(workdir) == {}
    return workdir


def plan_with(workdir, edit):
    config = demo_config()
    edit(config)
    write_config(workdir / "edited.yaml", config)
    jobs = planned_jobs(workdir, "--configfile", "edited.yaml")
    listing = run_snakemake(workdir, "-n", "--configfile", "edited.yaml").stdout
    return jobs, listing


@pytest.mark.parametrize(
    "kind, edit, new_output",
    [
        (
            "bench_infer",
            lambda c: c["benchmark"]["infer"]["batch_sizes"]["float32"].append(64),
            "results/bench_infer/float32/b64.json",
        ),
        (
            "bench_train",
            lambda c: c["benchmark"]["train"]["points"]["float32"]["batch_sizes"].append(8),
            "results/bench_train/float32/n0_b8.json",
        ),
    ],
    ids=["inference", "training"],
)
def test_one_more_batch_size_plans_exactly_one_new_job(finished_tree, kind, edit, new_output):
    jobs, listing = plan_with(finished_tree, edit)
    # A float32 inference batch size is also measured in onnxruntime (onnx.benchmark).
    onnx_point = {"bench_infer_onnx": 1} if kind == "bench_infer" else {}
    assert jobs == {kind: 1, **onnx_point, "bench_summary": 1, "report": 1, "all": 1}
    assert new_output in listing


def test_training_benchmarks_follow_the_configs_training_defaults(finished_tree):
    # bench_train runs training.defaults: a changed momentum reruns every training point;
    # a setting each point sets itself (cpu_contexts), or one that only changes the log,
    # leaves the training points alone.
    points = demo_config()["benchmark"]["train"]["points"]
    count = sum(len(p["gpus"]) * len(p["batch_sizes"]) for p in points.values())
    jobs, _ = plan_with(finished_tree, lambda c: c["training"]["defaults"].update(momentum=0.8))
    assert jobs["bench_train"] == count and jobs["train"] == len(demo_config()["training"]["runs"])
    edit = {"cpu_contexts": 2, "log_interval": 3}
    jobs, _ = plan_with(finished_tree, lambda c: c["training"]["defaults"].update(edit))
    assert "bench_train" not in jobs and jobs["train"] >= 1


def test_the_finished_tree_tracks_parameters(finished_tree):
    # The control for the test above: a setting every inference point reads reruns them
    # all, so "one new job" is not an artefact of a tree without provenance records.
    jobs, _ = plan_with(finished_tree, lambda c: c["benchmark"]["infer"].update(iterations=21))
    points = len(demo_config()["benchmark"]["infer"]["batch_sizes"]["float32"])
    expected = {"bench_infer": points, "bench_infer_onnx": points, "bench_summary": 1}
    assert jobs == {**expected, "report": 1, "all": 1}
