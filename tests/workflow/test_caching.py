"""What reruns after a change, proven on a finished run of the whole workflow.

One tiny but complete run (every stage, user-supplied raw folders, its own copy of the
package) is made once for the module; each test then changes one thing (a setting, an image,
a module) and reads the dry-run plan.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from helpers.workflow_runs import (
    RunningSnakemake,
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)

from resnet_recipe.data.demo_data import write_demo_tree
from resnet_recipe.deployment import onnx_export
from resnet_recipe.workflow_support import devices, provenance
from resnet_recipe.workflow_support.code_digest import stage_modules

RUN = "cpu_fp32"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
# The plan after a change to what the packed records hold.
REPACK_AND_DOWNSTREAM = {
    "pack_records": 2,
    "train": 1,
    "score": 1,
    "bench_train": 1,
    "bench_infer": 1,
    "bench_summary": 1,
    "export_onnx": 1,
    "score_onnx": 1,
    "bench_infer_onnx": 1,
    "report": 1,
    "all": 1,
}
# The ONNX jobs of the run (export and parity) and the onnxruntime inference point.
RUN_ONNX = {"export_onnx": 1, "score_onnx": 1}
ONNX_POINT = {"bench_infer_onnx": 1}


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
    # The workflow imports the package from <workdir>/src first: edits stay in this copy.
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    # A checkout of its own, so that results record a known commit.
    for command in (["init", "-q"], ["add", "src"], ["commit", "-q", "-m", "package"]):
        subprocess.run([*GIT, "-C", str(workdir), *command], check=True)
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
    expected = {"train": 1, "score": 1, **RUN_ONNX, "report": 1, "all": 1}
    assert plan_after(finished, config) == expected


def test_a_new_benchmark_batch_size_is_one_new_job(finished):
    config = tiny_config()
    config["benchmark"]["infer"]["batch_sizes"]["float32"].append(2)
    expected = {"bench_infer": 1, "bench_summary": 1, **ONNX_POINT, "report": 1, "all": 1}
    assert plan_after(finished, config) == expected
    config = tiny_config()
    config["benchmark"]["train"]["points"]["float32"]["batch_sizes"].append(4)
    expected = {"bench_train": 1, "bench_summary": 1, "report": 1, "all": 1}
    assert plan_after(finished, config) == expected


def test_a_packing_setting_repacks_and_reruns_everything_downstream(finished):
    config = tiny_config()
    config["data"]["max_rejected_fraction"] = 0.02
    assert plan_after(finished, config) == REPACK_AND_DOWNSTREAM


def test_a_training_default_reruns_every_run_and_the_training_benchmarks(finished):
    config = tiny_config()
    config["training"]["defaults"]["lr_factor"] = 0.5
    assert plan_after(finished, config) == {
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_summary": 1,
        **RUN_ONNX,
        "report": 1,
        "all": 1,
    }


def test_a_network_or_input_setting_reruns_training_scoring_and_benchmarks(finished):
    expected = {
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_infer": 1,
        "bench_summary": 1,
        **RUN_ONNX,
        **ONNX_POINT,
        "report": 1,
        "all": 1,
    }
    config = tiny_config()
    config["network"]["zero_init_last_gamma"] = not config["network"]["zero_init_last_gamma"]
    assert plan_after(finished, config) == expected
    config = tiny_config()
    config["input"]["min_random_area"] = 0.4
    assert plan_after(finished, config) == expected


def test_presentation_settings_rerun_nothing(finished):
    config = tiny_config()
    config["training"]["defaults"]["log_interval"] = 3
    config["training"]["runs"][RUN]["log_interval"] = 7
    config["training"]["defaults"]["max_overflows_at_min_loss_scale"] = 5
    config["data"]["pack_threads"] = 1
    assert plan_after(finished, config) == {}


@pytest.mark.parametrize(
    "setting, value",
    [
        ("dali_threads", 1),
        ("dali_val_threads", 1),
        ("prefetch_queue_depth", 3),
        ("nvjpeg_padding_mb", 16),
    ],
)
def test_dali_speed_settings_rerun_only_the_benchmarks(finished, setting, value):
    """Thread counts, prefetch depth and decoder memory change no trained model or
    score, but they are what a benchmark measures."""
    config = tiny_config()
    assert config["input"][setting] != value
    config["input"][setting] = value
    expected = {"bench_train": 1, "bench_infer": 1, "bench_summary": 1, "report": 1, "all": 1}
    assert plan_after(finished, config) == {**expected, **ONNX_POINT}


@contextlib.contextmanager
def edited(*paths):
    """The files with a line appended for the block; then their text and modification
    time as they were."""
    originals = {path: (path.read_bytes(), path.stat()) for path in paths}
    try:
        for path, (text, _) in originals.items():
            path.write_bytes(text + b"\n# an edit\n")
        yield
    finally:
        for path, (text, stat) in originals.items():
            path.write_bytes(text)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def package_modules(workdir):
    """Files of the package copy, and {script name: files of the modules it imports}."""
    package = workdir / "src"
    used = {
        script.name: {Path(file) for file in stage_modules(str(script), str(package)).values()}
        for script in (workdir / "workflow/scripts").glob("*.py")
    }
    return set(package.rglob("*.py")), used


def planned_after_editing(workdir, paths):
    assert paths
    with edited(*paths):
        return planned_jobs(workdir, "--configfile", "tiny.yaml")


def test_editing_code_only_the_report_uses_reruns_only_the_report(finished):
    _, used = package_modules(finished)
    others = set().union(*(files for script, files in used.items() if script != "report.py"))
    report_only = used["report.py"] - others
    assert planned_after_editing(finished, report_only) == {"report": 1, "all": 1}


def test_editing_the_packing_code_repacks_and_reruns_what_follows(finished):
    records = finished / "src/resnet_recipe/data/records.py"
    assert planned_after_editing(finished, [records]) == REPACK_AND_DOWNSTREAM


def test_editing_the_network_reruns_training_scoring_and_benchmarks(finished):
    network = finished / "src/resnet_recipe/model/network.py"
    assert planned_after_editing(finished, [network]) == {
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_infer": 1,
        "bench_summary": 1,
        **RUN_ONNX,
        **ONNX_POINT,
        "report": 1,
        "all": 1,
    }


def test_editing_or_adding_code_no_stage_uses_reruns_nothing(finished):
    everything, used = package_modules(finished)
    unused = everything - set().union(*used.values())
    assert finished / "src/resnet_recipe/cli.py" in unused
    new_module = finished / "src/resnet_recipe/new_module.py"
    new_module.write_text('"""A module no stage imports."""\n')
    try:
        assert planned_after_editing(finished, unused) == {}
    finally:
        new_module.unlink()


def test_editing_a_stage_script_reruns_that_stage_and_what_follows(finished):
    script = finished / "workflow/scripts/score.py"
    assert planned_after_editing(finished, [script]) == {"score": 1, "report": 1, "all": 1}


def test_a_checkout_that_leaves_the_text_unchanged_reruns_nothing(finished):
    """New modification times on every file of the package, as a checkout of another
    branch and back leaves them."""
    later = time.time() + 3600
    touched = sorted((finished / "src").rglob("*.py"))
    assert len(touched) > 30
    for path in touched:
        os.utime(path, (later, later))
    assert planned_jobs(finished, "--configfile", "tiny.yaml") == {}


def test_an_edited_raw_image_reruns_its_split_and_what_follows(finished):
    """An image rewritten in place changes no folder: the rescan finds it."""
    image = next((finished / "raw/train/digit7").iterdir())
    stat = image.stat()
    rescan = ("--configfile", "tiny.yaml", "--cores", "1", "rescan_raw_tree")
    try:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        run_snakemake(finished, *rescan)
        plan = planned_jobs(finished, "--configfile", "tiny.yaml")
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        run_snakemake(finished, *rescan)
    # val.lst and val.rec stay: the inference benchmark (val only) is not rerun.
    assert plan == {
        "make_list": 1,
        "pack_records": 1,
        "train": 1,
        "score": 1,
        "bench_train": 1,
        "bench_summary": 1,
        **RUN_ONNX,
        "report": 1,
        "all": 1,
    }


def test_every_result_records_its_provenance(finished):
    """Training report, score, benchmark points and summaries, ONNX parity and onnxruntime
    points: the code's commit, the
    versions, MXNet's build, the machine and a digest of the settings."""
    head = subprocess.run(
        ["git", "-C", str(finished), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    def point_files(folder):  # the results, less the DLLogger logs beside them
        paths = (finished / "results" / folder).rglob("*.json")
        return sorted(path for path in paths if not path.name.endswith(".dllogger.json"))

    points = [
        finished / f"results/train/{RUN}/report.json",
        finished / f"results/score/{RUN}.json",
        *point_files("bench_train"),
        *point_files("bench_infer"),
        finished / f"results/onnx/{RUN}/parity.json",
        *point_files("bench_infer_onnx"),
    ]
    sections = {path: json.loads(path.read_text())["provenance"] for path in points}
    # A benchmark summary holds one entry per dtype, each with its provenance.
    for kind in ("train", "infer"):
        summary = json.loads((finished / f"results/bench_summary/{kind}.json").read_text())
        assert list(summary) == ["float32"]
        sections[f"{kind} summary"] = summary["float32"]["provenance"]
    assert len(sections) == 8
    for where, found in sections.items():
        assert set(found) == {"code", "versions", "mxnet_features", "machine", "settings_digest"}
        assert found["code"] == {
            "version": metadata.version("resnet-recipe"),
            "git_commit": head,
            "git_uncommitted_changes": False,
        }, where
        assert found["versions"] == devices.package_versions(), where
        assert set(found["mxnet_features"]) == {"CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE"}
        assert found["mxnet_features"]["CUDA"] is False
        assert found["machine"]["hostname"] == socket.gethostname()
        assert (found["machine"]["gpus"], found["machine"]["gpu_count"]) == ([], 0)
        assert found["machine"]["gpu_driver"] is None
        assert len(found["settings_digest"]) == 64
    digests = {found["settings_digest"] for found in sections.values()}
    assert len(digests) == len(sections), "two results with the same settings digest"
    report = json.loads(points[0].read_text())
    made_with = {key: report[key] for key in ("settings", "network", "pipeline")}
    assert report["provenance"]["settings_digest"] == provenance.settings_digest(made_with)


def test_the_run_is_exported_and_both_engines_are_reported(finished):
    """The finished run's model.onnx, its parity with MXNet, the onnxruntime point with
    every field of the MXNet point beside it, and the report showing both engines."""
    model = finished / f"results/onnx/{RUN}/model.onnx"
    metadata = onnx_export.read_metadata(str(model))
    assert metadata["class_labels"] == [f"digit{d}" for d in range(10)]
    assert (metadata["run"], metadata["layout"], metadata["image_size"]) == (RUN, "NCHW", 16)
    parity = json.loads((finished / f"results/onnx/{RUN}/parity.json").read_text())
    assert parity["same_prediction_fraction"] >= 0.999
    assert parity["max_abs_logit_difference"] <= tiny_config()["onnx"]["logit_tolerance"]
    mxnet_point = json.loads((finished / "results/bench_infer/float32/b4.json").read_text())
    onnx_point = json.loads((finished / "results/bench_infer_onnx/b4.json").read_text())
    assert set(onnx_point) == set(mxnet_point) | {"engine", "provider", "threads"}
    assert onnx_point["engine"] == "onnxruntime"
    report = (finished / "results/report/report.md").read_text()
    assert "## Deployment: ONNX export in onnxruntime" in report
    onnxruntime_top1 = f"{100 * parity['onnxruntime']['top1']:.2f}"
    assert f"| {RUN} | float32 | {parity['images']} |" in report and onnxruntime_top1 in report
    assert "| 4 | onnxruntime |" in report


def test_a_killed_training_resumes_through_snakemake(finished, tmp_path):
    """SIGKILL the workflow right after epoch 1's checkpoint; the rerun continues at epoch
    2 with the saved optimizer state and metrics.jsonl holds every epoch once."""
    # The finished workflow's lists and records, with a run of two epochs to train.
    workdir = tmp_path / "workflow"
    shutil.copytree(finished, workdir, symlinks=True)
    shutil.rmtree(workdir / "results/checkpoints")
    config = tiny_config()
    config["training"]["defaults"].update(epochs=2)
    write_config(workdir / "killed.yaml", config)
    target = f"results/train/{RUN}"
    command = ["--configfile", "killed.yaml", "--cores", "2", target]
    assert planned_jobs(workdir, *command) == {"train": 1}
    workflow = RunningSnakemake(workdir, *command)
    state = workdir / "results/checkpoints" / RUN
    workflow.wait_until(lambda: list(state.glob("*/epoch-0001")), "epoch 1 was saved")
    workflow.signal(signal.SIGKILL)
    workflow.finish()
    assert not list(state.glob("*/epoch-0002")), "killed too late: training had finished"
    assert not (workdir / target / "metrics.jsonl").exists()

    # A killed Snakemake leaves its lock behind, as after a power loss.
    run_snakemake(workdir, "--configfile", "killed.yaml", "--unlock")
    run_snakemake(workdir, *command)
    log = Path(workdir / f"logs/train/{RUN}.log").read_text()
    assert "resuming after epoch 1" in log
    lines = (workdir / target / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_ctrl_c_stops_training_and_the_next_run_resumes_it_to_the_same_model(finished, tmp_path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it, once epoch 1
    has logged its first interval: training saves its position and stops, Snakemake ends;
    the next run resumes inside the epoch and exports the model the uninterrupted run
    exported, byte for byte."""
    workdir = tmp_path / "workflow"
    shutil.copytree(finished, workdir, symlinks=True)
    target = f"results/train/{RUN}"
    for made in ("results/checkpoints", target):
        shutil.rmtree(workdir / made)
    train_log = workdir / f"logs/train/{RUN}.log"
    train_log.unlink()  # the finished run's, which has the line waited for below
    command = ["--configfile", "tiny.yaml", "--cores", "2", target]
    workflow = RunningSnakemake(workdir, *command)
    workflow.wait_until(
        lambda: train_log.exists() and "epoch 1/1 batch " in train_log.read_text(),
        "epoch 1 logged a batch",
    )
    workflow.signal(signal.SIGINT)
    assert workflow.finish() != 0, workflow.output()[-6000:]
    stopped = train_log.read_text()
    assert " on SIGINT; state saved in " in stopped, stopped[-3000:]
    assert not (workdir / target).exists()

    run_snakemake(workdir, *command)
    resumed = train_log.read_text()
    iteration = int(stopped.split("stopped at epoch 1 iteration ", 1)[1].split()[0])
    assert f"resuming after iteration {iteration} of epoch 1" in resumed
    name = "model-0001.params"
    assert (workdir / target / name).read_bytes() == (finished / target / name).read_bytes()
    attempts = json.loads((workdir / target / "report.json").read_text())["attempts"]
    assert [a["ended_how"].split("; ")[0] for a in attempts] == [
        f"stopped at epoch 1 iteration {iteration} on SIGINT",
        "finished",
    ]
