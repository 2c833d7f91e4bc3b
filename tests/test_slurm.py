"""The workflow on a real SLURM cluster through profiles/slurm.

tests/slurm/setup.sh brings up a one-node cluster with accounting on this machine
(installing the Debian packages if needed); the workflow then runs through
`snakemake --profile profiles/slurm` and its results must equal a local run's.
"""

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    REPO,
    copy_workflow,
    demo_config,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)

SETUP = REPO / "tests" / "slurm" / "setup.sh"
TEARDOWN = REPO / "tests" / "slurm" / "teardown.sh"
# A fixed place, so that the next setup finds and stops a cluster a killed run left behind.
STATE_DIR = Path("/tmp/resnet-recipe-slurm")
# setup.sh's exit status when this machine cannot host the cluster.
CANNOT_HOST = 77

# What the cluster builds: the tiny demo's data, training and score. The benchmark, ONNX
# and report jobs are left out: every cluster job costs the executor plugin's status waits
# (at least 40 s per level of the plan), their sbatch resources are checked by the dry-run
# test below, and test_caching runs them locally.
TARGETS = ["results/score/cpu_fp32.json"]
# Outputs that must equal the local run's byte for byte (CPU training is deterministic);
# every other output must exist in both runs, and their timings differ.
IDENTICAL = ["results/lists/", "results/records/", "results/train/cpu_fp32/model-"]
# Timing fields; everything else in the metrics and scores must be equal.
TIMINGS = {"epoch_seconds", "images_per_s", "latency_ms"}
# With `=`, so that the targets after it are not read as more config files.
TINY = "--configfile=tiny.yaml"
TWO_CONFIG = "--configfile=two.yaml"
# A run of two workers through MXNet's distributed kvstore: on the cluster two srun tasks
# on its one node (profiles/slurm asks one node per worker, the test profile one in all).
TWO_WORKERS = "two_workers"
ONE_NODE_PROFILE = "profiles/slurm-one-node"


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running one-node cluster, stopped again after the session."""
    setup = subprocess.run(
        ["bash", str(SETUP), str(STATE_DIR)], capture_output=True, text=True, timeout=1800
    )
    if setup.returncode == CANNOT_HOST:
        reason = setup.stderr.strip().splitlines()[-1:] or ["tests/slurm/setup.sh said no"]
        pytest.skip(f"no SLURM test cluster: {reason[0]}")
    try:
        if setup.returncode != 0:
            pytest.fail(f"tests/slurm/setup.sh failed ({setup.returncode}):\n{setup.stderr}")
        yield str(STATE_DIR / "etc" / "slurm.conf")
    finally:
        subprocess.run(["bash", str(TEARDOWN), str(STATE_DIR)], check=True, timeout=300)


def without_timings(path):
    """The JSON objects of a .json or .jsonl file, less their timing fields."""
    lines = Path(path).read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
    records = [json.loads(line) for line in lines]
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in records]


def local_rules():
    """Rule names of the Snakefile's `localrules:` block."""
    block = (REPO / "Snakefile").read_text().split("localrules:", 1)[1].split("\n\n", 1)[0]
    return {name.strip() for name in block.replace("\n", " ").split(",") if name.strip()}


def output_files(workdir):
    results = Path(workdir) / "results"
    return {str(path.relative_to(workdir)) for path in results.rglob("*") if path.is_file()}


def slurm_jobs(run_id):
    """{SLURM job id: state} of the jobs one Snakemake run submitted (named by its run id)."""
    listing = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--format=JobIDRaw,State"]
        + ["--starttime=now-1days", f"--name={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|")[:2] for line in listing.splitlines())


@pytest.fixture(scope="module")
def tiny_runs(slurm_cluster, tmp_path_factory):
    """The tiny demo's TARGETS built locally and through profiles/slurm: {local, cluster: workdir,
    log: the cluster run's Snakemake output, submitted: the jobs it had to submit}. The
    two-worker test trains beside these results, on their records."""
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    cluster = copy_workflow(tmp_path_factory.mktemp("cluster"))
    for workdir in (local, cluster):
        write_config(workdir / "tiny.yaml", tiny_demo_config())
    jobs = planned_jobs(local, TINY, *TARGETS)
    # The Snakefile's localrules run on the submit host; everything else is an sbatch job.
    submitted = sum(count for rule, count in jobs.items() if rule not in local_rules())
    run_snakemake(local, TINY, *TARGETS)
    with pytest.MonkeyPatch.context() as patch:
        on_cluster(patch, slurm_cluster)
        process = run_snakemake(cluster, "--profile", "profiles/slurm", TINY, "--verbose", *TARGETS)
    log = process.stdout + process.stderr
    return {"local": local, "cluster": cluster, "log": log, "submitted": submitted}


def on_cluster(patch, slurm_conf):
    """Environment of a Snakemake run that submits to the test cluster."""
    patch.setenv("SLURM_CONF", slurm_conf)
    # The executor plugin reads $USER, which a root shell without login may lack.
    patch.setenv("USER", os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name)


@pytest.mark.slow
def test_workflow_on_slurm_matches_a_local_run(tiny_runs, slurm_cluster, monkeypatch):
    on_cluster(monkeypatch, slurm_cluster)  # sacct below asks the test cluster
    local, cluster, log = tiny_runs["local"], tiny_runs["cluster"], tiny_runs["log"]
    submitted = tiny_runs["submitted"]
    sbatch_calls = [line for line in log.splitlines() if "sbatch call:" in line]
    assert len(sbatch_calls) == submitted
    # CPU jobs (gpu=0) must not ask SLURM for GPUs: this cluster has none.
    assert not [call for call in sbatch_calls if "--gpus" in call or "--gres" in call]
    run_id = log.split("SLURM run ID: ", 1)[1].split()[0]
    states = slurm_jobs(run_id)
    assert list(states.values()) == ["COMPLETED"] * submitted, states

    assert output_files(cluster) == output_files(local)
    for name in sorted(output_files(local)):
        if name.startswith(tuple(IDENTICAL)):
            assert (cluster / name).read_bytes() == (local / name).read_bytes(), name
    for name in ("results/train/cpu_fp32/metrics.jsonl", "results/score/cpu_fp32.json"):
        assert without_timings(cluster / name) == without_timings(local / name), name


def test_profile_gives_gpu_rules_their_gpus(workflow_dir):
    """A 2-GPU training run and a 4-GPU benchmark keep gpu=2 and gpu=4 under the SLURM
    profile (the plugin submits them with --gpus=N) with the profile's CPUs and memory per
    GPU; a CPU run keeps gpu=0, which requests no GPU."""
    config = demo_config()
    config["training"]["runs"]["gpu2"] = {"gpus": 2}
    config["benchmark"]["train"]["points"] = {"float32": {"gpus": [4], "batch_sizes": [32]}}
    write_config(workflow_dir / "gpus.yaml", config)
    process = run_snakemake(
        workflow_dir, "--profile", "profiles/slurm", "--configfile", "gpus.yaml", "-n"
    )
    resources = {}
    for block in process.stdout.split("\nrule ")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines() if ": " in line)
        if "output" in fields:
            listed = fields["resources"].split(", ")
            resources[fields["output"]] = dict(item.split("=", 1) for item in listed)
    train = resources["results/train/gpu2"]
    # A gpu limit in the workflow profile (profiles/default) wins over this profile's and
    # clamps every rule's gpu to it: with 0, GPU jobs would be submitted without GPUs.
    assert train["gpu"] == "2", "a gpu limit in profiles/default clamps the rules' gpu"
    assert (train["cpus_per_gpu"], train["mem_mb_per_cpu"]) == ("8", "4000")
    assert resources["results/bench_train/float32/n4_b32.json"]["gpu"] == "4"
    assert resources["results/train/cpu_fp32"]["gpu"] == "0"


@pytest.mark.slow
def test_two_workers_run_on_slurm_as_two_tasks(tiny_runs, slurm_cluster, monkeypatch):
    """A two-worker run through `--profile` is one sbatch job of two srun tasks, one worker
    each, on the records the tiny demo packed."""
    local, cluster = tiny_runs["local"], tiny_runs["cluster"]
    config = tiny_demo_config()
    config["training"]["runs"] = {TWO_WORKERS: {"nodes": 2}}
    write_config(cluster / "two.yaml", config)
    write_one_node_profile(cluster)
    target = f"results/train/{TWO_WORKERS}"

    on_cluster(monkeypatch, slurm_cluster)
    process = run_snakemake(cluster, "--profile", ONE_NODE_PROFILE, TWO_CONFIG, "--verbose", target)
    log = process.stdout + process.stderr
    sbatch_calls = [line for line in log.splitlines() if "sbatch call:" in line]
    # Only the training job: the data came from the tiny demo's run.
    (train_call,) = sbatch_calls
    assert "rule_train" in train_call
    assert "--nodes=1" in train_call and "--ntasks=2" in train_call
    states = slurm_jobs(log.split("SLURM run ID: ", 1)[1].split()[0])
    assert list(states.values()) == ["COMPLETED"], states

    train_log = (cluster / "logs" / "train" / f"{TWO_WORKERS}.log").read_text()
    assert "srun --ntasks=2" in train_log and "rank 1 of 2" in train_log
    # Only the launch is checked, not the numbers: this one-epoch ResNet-50 run without
    # warmup has given training losses 10% apart under srun and under the local launcher,
    # for a cause not known. (tests/test_distributed.py shows two local workers equal one
    # process over two devices, bitwise.)
    metrics = [json.loads(line) for line in (cluster / target / "metrics.jsonl").open()]
    assert [m["epoch"] for m in metrics] == [1]
    single_worker = model_weights(local / "results/train/cpu_fp32")
    assert model_weights(cluster / target).keys() == single_worker.keys()


def model_weights(run_folder):
    """{name: array} of the last model-NNNN.params of a run folder."""
    import mxnet as mx

    (params,) = sorted(Path(run_folder).glob("model-*.params"))[-1:]
    _, arguments, auxiliaries = mx.model.load_checkpoint(
        str(params.parent / "model"), int(params.stem.split("-")[1])
    )
    return {name: value.asnumpy() for name, value in {**arguments, **auxiliaries}.items()}


def write_one_node_profile(workdir):
    """profiles/slurm for a cluster of one node: the train job asks one node in all and
    one CPU per task (the node has as few CPUs as this machine)."""
    profile = yaml.safe_load((workdir / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["train"].update(nodes=1, cpus_per_task=1)
    folder = workdir / ONE_NODE_PROFILE
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
