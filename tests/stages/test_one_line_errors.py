"""Errors a user causes end the command in one line on stderr and exit status 2, with no
traceback; --debug and RESNET_RECIPE_DEBUG=1 show the traceback (files.user_errors).
Each command runs as its own process, as a user runs it."""

import os
import subprocess
import sys

from resnet_recipe.workflow_support import devices

# The tiny run of helpers.tiny, as command-line options.
TINY_TRAINING = [
    "--dtype", "float32", "--batch-per-device", "8", "--epochs", "1", "--warmup-epochs", "0",
    "--lr-steps", "1", "--depth", "18", "--backend", "dali-cpu", "--image-size", "16",
    "--val-resize", "18", "--dali-threads", "1", "--dali-val-threads", "1",
]  # fmt: skip


def resnet_recipe(*args, debug=None):
    """Run `resnet-recipe args` outside SLURM and without a GPU choice of the caller's."""
    env = {key: value for key, value in os.environ.items() if key not in ("SLURM_JOB_ID",)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("RESNET_RECIPE_DEBUG", None)
    if debug is not None:
        env["RESNET_RECIPE_DEBUG"] = debug
    return subprocess.run(
        [sys.executable, "-m", "resnet_recipe", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def assert_one_line(process, *fragments):
    """Status 2, no traceback, and stderr ending in one line that holds every fragment."""
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    last = process.stderr.splitlines()[-1]
    assert last.startswith("resnet-recipe: error: "), process.stderr
    for fragment in fragments:
        assert fragment in last


def train_args(tiny_data, tmp_path, *options):
    return [
        "train",
        *("--train-rec", tiny_data["train_rec"], "--val-rec", tiny_data["val_rec"]),
        *("--classes", tiny_data["classes_tsv"], "--out", tmp_path / "run"),
        *("--lock-dir", tmp_path / "locks"),
        *TINY_TRAINING,
        *options,
    ]


def test_more_gpus_than_the_machine_has(tiny_data, tmp_path):
    gpus = devices.count_gpus() + 1  # 1 on a machine without GPUs
    process = resnet_recipe(*train_args(tiny_data, tmp_path, "--gpus", gpus))
    have = "none" if gpus == 1 else f"{gpus - 1} ("
    assert_one_line(process, f"needs {devices.gpus_phrase(gpus)} but this machine has {have}")
    assert not (tmp_path / "run").exists()


def test_a_diverged_run(tiny_data, tmp_path):
    process = resnet_recipe(*train_args(tiny_data, tmp_path, "--gpus", 0, "--lr-per-256", 1e30))
    assert_one_line(process, "run run diverged in epoch 1/1", "training.lr_per_256 (1e+30)")


def test_a_missing_checkpoint_and_its_traceback_on_request(tmp_path):
    score = ["score", "--prefix", "/nonexistent/model", "--epoch", 1]
    score += ["--val-rec", tmp_path / "val.rec", "--out", tmp_path / "score.json"]
    process = resnet_recipe(*score)
    assert_one_line(process, "/nonexistent/model-symbol.json not found")
    for shown in (resnet_recipe("--debug", *score), resnet_recipe(*score, debug="1")):
        assert shown.returncode == 1
        assert "Traceback" in shown.stderr
        assert shown.stderr.splitlines()[-1].endswith("/nonexistent/model-symbol.json not found")


def test_a_raw_tree_without_classes(tmp_path):
    (tmp_path / "raw").mkdir()
    make_list = ["make-list", tmp_path / "raw", tmp_path / "train.lst"]
    process = resnet_recipe(*make_list, "--classes", tmp_path / "c.tsv", "--write-classes")
    assert_one_line(process, f"{tmp_path / 'raw'} has no class folders")


def test_a_bad_value(tiny_data, tmp_path):
    process = resnet_recipe(*train_args(tiny_data, tmp_path, "--gpus", 0, "--val-resize", 8))
    assert_one_line(process, "input.val_resize (8) is smaller than input.image_size (16)")
    process = resnet_recipe(*train_args(tiny_data, tmp_path, "--lr-per-256", "fast"))
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.splitlines()[-1].endswith("--lr-per-256: expected a number, not 'fast'")
