"""The preflight verdicts on recorded machine facts (device facts in, verdicts out); the
command on this machine and on a small mounted file system: stages/test_preflight_command.py."""

import copy

import yaml
from helpers import REPO

from resnet_recipe.workflow_support.preflight import Facts, check

IMAGENET = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
# An 8x H100 machine with the CUDA 11.2 build of MXNet, as nvidia-smi and pip report it.
H100_NODE = Facts(
    gpus=(("NVIDIA H100 80GB HBM3", (9, 0)),) * 8,
    driver="550.54.15",
    mxnet_build="mxnet-cu112",
    nccl=True,
    dali_mxnet=True,
    free_bytes=30 * 10**12,
    raw_bytes=147 * 10**9,
    results_fs="ext4",
    interfaces=("lo", "eth0"),
)
V100_NODE = Facts(**{**H100_NODE.__dict__, "gpus": (("Tesla V100-SXM2-32GB", (7, 0)),) * 8})


def test_an_h100_node_with_mxnet_cu112_names_the_capability_and_the_ngc_container():
    problems, _ = check(IMAGENET, H100_NODE)
    assert len(problems) == 8
    assert problems[0] == (
        "GPU 0 (NVIDIA H100 80GB HBM3) has compute capability 9.0, above the 8.6 that "
        "mxnet-cu112 1.9.1 has kernels for: run in NVIDIA's NGC MXNet container 24.05 or "
        "24.06 (MXNet 1.9.1 on CUDA 12.4), which supports it (docs/gpus.md)"
    )


def test_the_original_recipe_passes_on_a_dgx1():
    problems, notes = check(IMAGENET, V100_NODE)
    assert problems == []
    # Six runs of 90 epochs, each exported every epoch: 6 x 90 x 102.4 MB.
    assert notes == [
        "disk estimate under results/: records ~147.0 GB, exports ~55.3 GB, states ~2.5 GB; "
        "total ~204.8 GB"
    ]


def test_too_few_gpus_an_old_driver_and_a_cpu_build():
    problems, _ = check(IMAGENET, Facts(**{**V100_NODE.__dict__, "gpu_limit": 4}))
    assert "training.runs.fp16_8gpu.gpus is 8, but --resources gpu=4 allows 4 GPUs" in (problems[0])
    old = Facts(**{**V100_NODE.__dict__, "mxnet_build": "mxnet-cu102", "driver": "418.67"})
    assert check(IMAGENET, old)[0] == [
        "the NVIDIA driver 418.67 is older than the 440.33 that CUDA 10.2 (mxnet-cu102) "
        "needs: update the driver"
    ]
    cpu = Facts(**{**V100_NODE.__dict__, "mxnet_build": "mxnet", "nccl": False})
    assert [line.split(":")[0] for line in check(IMAGENET, cpu)[0]] == [
        "mxnet is MXNet's CPU build, but runs fp16_1gpu, fp16_4gpu, fp16_8gpu, fp32_1gpu, "
        "fp32_4gpu, fp32_8gpu use GPUs",
        "runs fp16_4gpu, fp16_8gpu, fp32_4gpu, fp32_8gpu use several GPUs, but mxnet has no NCCL",
    ]


def test_a_full_disk_and_a_run_over_several_machines_off_a_shared_file_system():
    small = Facts(**{**V100_NODE.__dict__, "free_bytes": 100 * 10**9})
    assert check(IMAGENET, small)[0] == [
        "results/ needs about 204.8 GB but its file system has 100.0 GB free: free space, "
        "point the working copy elsewhere, or export fewer epochs (training.export_every)"
    ]
    config = copy.deepcopy(IMAGENET)
    config["training"]["runs"]["fp16_8gpu"]["nodes"] = 2
    # Submitted to a cluster that gives the run two machines.
    cluster = Facts(**{**V100_NODE.__dict__, "submits": True, "spread_runs": ("fp16_8gpu",)})
    assert check(config, cluster)[0] == [
        "distributed.interface is lo, but runs fp16_8gpu have workers on different nodes, "
        "which lo cannot reach: set the cluster's internal interface",
        "runs fp16_8gpu span nodes, but results/checkpoints is on a ext4 file system, which "
        "the nodes do not share: run from a working copy on a shared file system (NFS, "
        "Lustre, GPFS, ...)",
    ]
    config["distributed"]["interface"] = "ib0"
    assert check(config, cluster)[0][0] == (
        "distributed.interface is ib0, which this machine does not have (it has lo, eth0): "
        "set the cluster's internal interface"
    )
    assert check(config, Facts(**{**cluster.__dict__, "results_fs": "nfs4",
                                  "interfaces": ("lo", "ib0")}))[0] == []  # fmt: skip
    # Locally, or on a cluster whose profile gives the run one node, every worker is on one
    # machine: its own file system and lo serve.
    config["distributed"]["interface"] = "lo"
    assert check(config, V100_NODE)[0] == []
    assert check(config, Facts(**{**cluster.__dict__, "spread_runs": ()}))[0] == []


def test_the_demo_needs_no_gpu_but_dalis_plugin():
    cpu_only = Facts(free_bytes=10**10, interfaces=("lo",))
    assert check(DEMO, cpu_only)[0] == [
        "input.backend needs DALI, but DALI's MXNet plugin (nvidia.dali.plugin.mxnet) is not "
        "installed: install nvidia-dali-cuda110==1.34.0 (make run)"
    ]
    assert check(DEMO, Facts(**{**cpu_only.__dict__, "dali_mxnet": True}))[0] == []
