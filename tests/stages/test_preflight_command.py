"""`resnet-recipe preflight` as a user runs it: on this machine, on a config with a bad key,
and with its results folder on a real 1 MB file system (a tmpfs mounted for the test)."""

import subprocess
import sys

import yaml
from helpers import REPO
from helpers.file_systems import mounted_tmpfs

from resnet_recipe.workflow_support import devices


def preflight(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "resnet_recipe", "preflight", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_the_imagenet_config_on_this_machine():
    process = preflight("--configfile", "config/config.yaml")
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stdout.startswith("disk estimate under results/: records ~")
    assert "exports ~55.3 GB, states ~2.5 GB" in process.stdout
    if devices.count_gpus() < 8:
        assert "preflight: training.runs.fp16_8gpu.gpus is 8, but this machine has" in (
            process.stderr
        )
    assert process.stderr.splitlines()[-1].startswith("resnet-recipe: error: ")


def test_the_demo_passes_but_not_on_a_full_disk(tmp_path):
    process = preflight("--configfile", "config/demo.yaml")
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines()[-1] == "preflight: config/demo.yaml passes"
    with mounted_tmpfs(tmp_path / "small", "1m") as small:
        process = preflight("--configfile", "config/demo.yaml", "--results", small / "results")
    assert process.returncode == 2
    assert "preflight: results/ needs about 0.5 GB but its file system has 0.0 GB free" in (
        process.stderr
    )


def test_a_bad_config_key_is_one_line(tmp_path):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["training"]["defaults"]["epoch"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    process = preflight("--configfile", tmp_path / "bad.yaml")
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.splitlines() == [
        f"resnet-recipe: error: {tmp_path / 'bad.yaml'}: training.defaults: Additional "
        "properties are not allowed ('epoch' was unexpected)"
    ]


def test_a_run_over_two_nodes_passes_here_but_not_submitted_from_a_local_disk(tmp_path):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["training"]["runs"]["two_workers"] = {"nodes": 2}
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(config))
    # The local launcher starts both workers on this machine.
    with mounted_tmpfs(tmp_path / "local", "2g") as local:
        here = preflight("--configfile", tmp_path / "two.yaml", "--results", local / "results")
        slurm = preflight(
            "--configfile", tmp_path / "two.yaml", "--results", local / "results", "--slurm"
        )
    assert here.returncode == 0, here.stderr
    assert slurm.returncode == 2
    assert slurm.stderr.splitlines()[:2] == [
        "preflight: distributed.interface is lo, but runs two_workers have workers on "
        "different nodes, which lo cannot reach: set the cluster's internal interface",
        "preflight: runs two_workers span nodes, but results/checkpoints is on a tmpfs file "
        "system, which the nodes do not share: run from a working copy on a shared file "
        "system (NFS, Lustre, GPFS, ...)",
    ]
