"""What reruns after a change, proven on a finished run of the whole workflow.

One tiny but complete run (every stage, user-supplied raw folders) is made once for the
module; each test then changes one thing and reads the dry-run plan.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    SNAKEMAKE,
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)

from resnet_recipe.demo_data import write_demo_tree

pytestmark = pytest.mark.slow

RUN = "cpu_fp32"


def tiny_config():
    """The tiny demo on a user-supplied raw tree, with ResNet-18 at 16 px."""
    config = tiny_demo_config()
    config["data"].update(raw_dir="raw", demo=False)
    config["input"].update(image_size=16, val_resize=16)
    config["network"]["depth"] = 18
    config["training"]["defaults"].update(batch_per_device=32, log_interval=20)
    config["benchmark"]["infer"]["batch_sizes"] = {"float32": [4]}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workflow copy whose every output has been made from the tiny config."""
    workdir = copy_workflow(tmp_path_factory.mktemp("cached") / "workflow")
    write_demo_tree(workdir / "raw")
    write_config(workdir / "tiny.yaml", tiny_config())
    run_snakemake(workdir, "--configfile", "tiny.yaml", "--cores", "2")
    assert (workdir / "results/report/report.md").is_file()
    return workdir


def plan_after(workdir, config):
    write_config(workdir / "edited.yaml", config)
    return planned_jobs(workdir, "--configfile", "edited.yaml")


def test_a_second_run_does_nothing(finished):
    assert planned_jobs(finished, "--configfile", "tiny.yaml") == {}


def test_a_comment_or_key_order_changes_nothing(finished):
    sections = [
        f"# the {name} section, moved\n" + yaml.safe_dump({name: value}, sort_keys=True)
        for name, value in reversed(list(tiny_config().items()))
    ]
    (finished / "commented.yaml").write_text("\n".join(sections))
    assert planned_jobs(finished, "--configfile", "commented.yaml") == {}


def test_one_runs_batch_size_reruns_that_run_and_the_report(finished):
    config = tiny_config()
    config["training"]["runs"][RUN]["batch_per_device"] = 16
    assert plan_after(finished, config) == {"train": 1, "score": 1, "report": 1, "all": 1}


def test_a_new_benchmark_batch_size_is_one_new_job(finished):
    config = tiny_config()
    config["benchmark"]["infer"]["batch_sizes"]["float32"].append(2)
    expected = {"bench_infer": 1, "bench_summary": 1, "report": 1, "all": 1}
    assert plan_after(finished, config) == expected
    config = tiny_config()
    config["benchmark"]["train"]["points"]["float32"]["batch_sizes"].append(4)
    expected = {"bench_train": 1, "bench_summary": 1, "report": 1, "all": 1}
    assert plan_after(finished, config) == expected


def test_a_packing_setting_repacks_and_reruns_everything_downstream(finished):
    config = tiny_config()
    config["data"]["max_rejected_fraction"] = 0.02
    assert plan_after(finished, config) == {
        "pack_records": 2,
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_infer": 1,
        "bench_summary": 1,
        "report": 1,
        "all": 1,
    }


def test_an_edited_raw_image_reruns_its_split_and_what_follows(finished):
    image = next((finished / "raw/train/digit7").iterdir())
    stat = image.stat()
    try:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        plan = planned_jobs(finished, "--configfile", "tiny.yaml")
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # val.lst and val.rec stay: the inference benchmark (val only) is not rerun.
    assert plan == {
        "make_list": 1,
        "pack_records": 1,
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_summary": 1,
        "report": 1,
        "all": 1,
    }


def test_a_killed_training_resumes_through_snakemake(tmp_path):
    """SIGKILL the workflow right after epoch 1's checkpoint; the rerun continues at epoch
    2 with the saved optimizer state and metrics.jsonl holds every epoch once."""
    workdir = copy_workflow(tmp_path / "workflow")
    write_demo_tree(workdir / "raw")
    config = tiny_config()
    config["training"]["defaults"].update(epochs=3, lr_steps=[2])
    write_config(workdir / "tiny.yaml", config)
    target = f"results/train/{RUN}"
    command = [SNAKEMAKE, "--configfile", "tiny.yaml", "--cores", "2", target]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = workdir / "results/checkpoints" / RUN
    deadline = time.monotonic() + 600
    while not list(state.glob("*/epoch-0001")):
        assert process.poll() is None, "the workflow ended before epoch 1 was saved"
        assert time.monotonic() < deadline, "no checkpoint of epoch 1 after 10 minutes"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(state.glob("*/epoch-0003")), "killed too late: training had finished"
    assert not (workdir / target / "metrics.jsonl").exists()

    # A killed Snakemake leaves its lock behind, as after a power loss.
    run_snakemake(workdir, "--configfile", "tiny.yaml", "--unlock")
    run_snakemake(workdir, "--configfile", "tiny.yaml", "--cores", "2", target)
    log = Path(workdir / f"logs/train/{RUN}.log").read_text()
    assert "resuming after epoch" in log
    resumed_epoch = int(log.split("resuming after epoch ")[1].split()[0])
    assert resumed_epoch in (1, 2)
    lines = (workdir / target / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
