"""The workflow on a real SLURM cluster through profiles/slurm.

tests/workflow/slurm/setup.sh brings up a one-node cluster with accounting on this machine
(installing the Debian packages if needed); the workflow then runs through
`snakemake --profile profiles/slurm` and its results must equal a local run's.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from helpers.workflow_runs import (
    RunningSnakemake,
    copy_workflow,
    demo_config,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)

SETUP = REPO / "tests" / "workflow" / "slurm" / "setup.sh"
TEARDOWN = REPO / "tests" / "workflow" / "slurm" / "teardown.sh"
# A fixed place, so that the next setup finds and stops a cluster a killed run left behind.
STATE_DIR = Path("/tmp/resnet-recipe-slurm")
# setup.sh's exit status when this machine cannot host the cluster.
CANNOT_HOST = 77

# A run of two workers through MXNet's distributed kvstore: on the cluster one job of two
# srun tasks on its one node. It does not stop ahead of its end: its start-up (scheduler,
# srun, servers, workers) took up to 24 s on a loaded machine, past a stop 14 s in.
TWO_WORKERS = "two_workers"
# A run whose train job requeues itself on the cluster: each attempt stops
# STOP_AFTER_SECONDS after its job started (the job's TRAIN_MINUTES less the run's
# training.stop_before_job_end_minutes), saves, requeues the job and resumes in it.
REQUEUED = "cpu_fp32"
TRAIN_MINUTES = 2
STOP_AFTER_SECONDS = 14
# A job starts training 6-7 s after it starts, so each attempt trains about 8 s. Eight
# epochs of ResNet-18 at 16 px train for about 30 s at one thread on a 2-core AMD Zen 4
# (four took 22 s on a 2-core Xeon), so the job stops at least twice on a machine up to
# twice as fast; a slower one only stops more often, which REQUEUES_ALLOWED allows for.
REQUEUED_EPOCHS = 8
REQUEUES_ALLOWED = 100
# Runs whose train job fails once and is not requeued. A user error (status 2): a batch
# larger than the training set, a rate that makes the run diverge, and a stop margin longer
# than the job's whole time limit; and a run that stops ahead of its job's end more often
# than training.max_requeues lets the job requeue itself (status 75: running the workflow
# again resumes it). Its epochs need at least three attempts, whatever the machine.
FAILING = "batch_too_large"
DIVERGING = "diverging"
LIMIT_TOO_SHORT = "limit_too_short"
OUT_OF_REQUEUES = "out_of_requeues"
FAILING_RUNS = {
    FAILING: {"batch_per_device": 4096},
    DIVERGING: {"lr_per_256": 1e30},
    LIMIT_TOO_SHORT: {"stop_before_job_end_minutes": TRAIN_MINUTES + 1},
    OUT_OF_REQUEUES: {
        "epochs": 2 * REQUEUED_EPOCHS,
        "stop_before_job_end_minutes": TRAIN_MINUTES - STOP_AFTER_SECONDS / 60,
        "max_requeues": 1,
    },
}
# The last line of each one's train job log.
FAILING_LAST_LINES = {
    FAILING: "fewer than one global batch",
    DIVERGING: "diverged in epoch 1/1",
    LIMIT_TOO_SHORT: "within training.stop_before_job_end_minutes (3)",
    OUT_OF_REQUEUES: "is not requeued: it restarted 1 times (training.max_requeues)",
}
# What both runs build: the tiny demo's data, training and score, and the two-worker run.
# The benchmark, ONNX and report jobs are left out: every cluster job costs the executor
# plugin's status waits (at least 40 s per level of the plan), their sbatch resources are
# checked by the dry-run test below, and test_caching runs them locally. The cluster run
# also trains the FAILING_RUNS (with --keep-going).
TARGETS = [f"results/score/{REQUEUED}.json", f"results/train/{TWO_WORKERS}"]
# Outputs that must equal the local run's byte for byte (CPU training is deterministic at a
# given thread count); every other output must exist in both runs, and their timings differ.
IDENTICAL = [
    "results/lists/",
    "results/records/",
    "results/train/cpu_fp32/model-",
    f"results/train/{TWO_WORKERS}/model-",
]
# A run preempted on the cluster once its second epoch is under way: a job of the urgent
# partition (setup.sh) that needs every CPU of the node makes SLURM requeue it. Its
# result settings are REQUEUED's, so its last model must be the local REQUEUED run's.
PREEMPTED = "preempted"
URGENT_PARTITION = "urgent"
# Relative tolerance of the two-worker run's metrics (float32 rounding of a sum of losses).
WORKER_SUM_TOLERANCE = 1e-6
# Timing fields; everything else in the metrics and scores must be equal.
TIMINGS = {"epoch_seconds", "images_per_s", "latency_ms"}
# With `=`, so that the targets after it are not read as more config files.
TINY = "--configfile=tiny.yaml"
# One CPU thread per training process in both runs: MXNet's CPU results depend on the
# thread count (the order of the sums in a convolution's gradient), and under SLURM the
# two-worker job's tasks get the rule's threads each (the node has only two CPUs).
ONE_THREAD = ["--set-threads=train=1"]
# profiles/slurm asks one node per worker; this cluster has one node in all.
ONE_NODE_PROFILE = "profiles/slurm-one-node"


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running one-node cluster, stopped again after the session."""
    setup = subprocess.run(
        ["bash", str(SETUP), str(STATE_DIR)], capture_output=True, text=True, timeout=1800
    )
    if setup.returncode == CANNOT_HOST:
        reason = setup.stderr.strip().splitlines()[-1:] or [f"{SETUP} said no"]
        pytest.skip(f"no SLURM test cluster: {reason[0]}")
    try:
        if setup.returncode != 0:
            pytest.fail(f"{SETUP} failed ({setup.returncode}):\n{setup.stderr}")
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
    """The files under results/, less the resumable states (results/checkpoints/): a run
    that stopped and resumed keeps other positions than one that never stopped."""
    results = Path(workdir) / "results"
    return {
        str(path.relative_to(workdir))
        for path in results.rglob("*")
        if path.is_file() and not path.is_relative_to(results / "checkpoints")
    }


def slurm_jobs(log, slurm_conf, *options):
    """[(SLURM job id, state, exit code)] of the jobs the Snakemake run of `log` submitted
    (they carry its run id as their name): each job's latest record, or with --duplicates
    one record per start of a requeued job, in order."""
    run_id = log.split("SLURM run ID: ", 1)[1].split()[0]
    listing = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--format=JobIDRaw,State,ExitCode"]
        + ["--starttime=now-1days", f"--name={run_id}", *options],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **cluster_environment(slurm_conf)},
    ).stdout
    return [tuple(line.split("|")[:3]) for line in listing.splitlines()]


def job_starts(log, slurm_conf, job):
    """[(job, state, exit code)] of every start of SLURM job `job` submitted by the
    Snakemake run of `log`, in order: one record per requeue, then the last one."""
    return [record for record in slurm_jobs(log, slurm_conf, "--duplicates") if record[0] == job]


def train_job_id(log, run):
    """The SLURM job id of run's train job in the Snakemake output `log`."""
    (job_id,) = re.findall(rf"SLURM jobid (\d+) \(log: \S*/rule_train/{run}/", log)
    return job_id


@pytest.fixture(scope="module")
def tiny_runs(slurm_cluster, tmp_path_factory):
    """The TARGETS built locally and, at the same time, through the SLURM profile: {local,
    cluster: workdir, log: the cluster run's Snakemake output, submitted: the jobs it had
    to submit}."""
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    cluster = copy_workflow(tmp_path_factory.mktemp("cluster"))
    config = tiny_demo_config()
    # ResNet-18 at 16 px: the cluster's jobs queue on its two CPUs, one training at a time.
    config["network"]["depth"] = 18
    config["input"].update(image_size=16, val_resize=16)
    # Only REQUEUED, OUT_OF_REQUEUES and LIMIT_TOO_SHORT stop ahead of their job's end.
    config["training"]["defaults"]["stop_before_job_end_minutes"] = 0
    config["training"]["runs"][TWO_WORKERS] = {"nodes": 2}
    config["training"]["runs"][REQUEUED] = {
        "epochs": REQUEUED_EPOCHS,
        "max_requeues": REQUEUES_ALLOWED,
        "stop_before_job_end_minutes": TRAIN_MINUTES - STOP_AFTER_SECONDS / 60,
    }
    config["training"]["runs"].update(FAILING_RUNS)
    for workdir in (local, cluster):
        write_config(workdir / "tiny.yaml", config)
    write_one_node_profile(cluster)
    jobs = planned_jobs(local, TINY, *TARGETS)
    # The Snakefile's localrules run on the submit host; everything else is an sbatch job.
    submitted = sum(count for rule, count in jobs.items() if rule not in local_rules())
    # The local run computes while the cluster run waits for SLURM's status.
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(run_snakemake, local, TINY, *ONE_THREAD, *TARGETS)
        process = run_snakemake(
            cluster,
            *("--profile", ONE_NODE_PROFILE, TINY, *ONE_THREAD, "--verbose", "--keep-going"),
            *TARGETS,
            *(f"results/train/{run}" for run in FAILING_RUNS),
            env=cluster_environment(slurm_cluster),
            check=False,
        )
        local_run.result()
    log = process.stdout + process.stderr
    assert process.returncode != 0, f"the FAILING_RUNS' train jobs must fail:\n{log[-6000:]}"
    return {"local": local, "cluster": cluster, "log": log, "submitted": submitted}


def cluster_environment(slurm_conf):
    """Environment of a Snakemake run or a SLURM command that talks to the test cluster."""
    # The executor plugin reads $USER, which a root shell without login may lack.
    user = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    return {"SLURM_CONF": slurm_conf, "USER": user}


def test_workflow_on_slurm_matches_a_local_run(tiny_runs, slurm_cluster):
    local, cluster, log = tiny_runs["local"], tiny_runs["cluster"], tiny_runs["log"]
    submitted = tiny_runs["submitted"]
    sbatch_calls = [line for line in log.splitlines() if "sbatch call:" in line]
    assert len(sbatch_calls) == submitted + len(FAILING_RUNS)
    # CPU jobs (gpu=0) must not ask SLURM for GPUs: this cluster has none.
    assert not [call for call in sbatch_calls if "--gpus" in call or "--gres" in call]
    states = {job: state for job, state, _ in slurm_jobs(log, slurm_cluster)}
    for run in FAILING_RUNS:
        assert states.pop(train_job_id(log, run)) == "FAILED", run
    assert list(states.values()) == ["COMPLETED"] * submitted, states

    assert output_files(cluster) == output_files(local)
    for name in sorted(output_files(local)):
        if name.startswith(tuple(IDENTICAL)):
            assert (cluster / name).read_bytes() == (local / name).read_bytes(), name
    for name in ("results/train/cpu_fp32/metrics.jsonl", "results/score/cpu_fp32.json"):
        assert without_timings(cluster / name) == without_timings(local / name), name
    # The two-worker run's losses are sums over the workers through the kvstore, which
    # have come out one float32 rounding apart between runs of byte-identical weights.
    name = f"results/train/{TWO_WORKERS}/metrics.jsonl"
    expected = [
        pytest.approx(record, rel=WORKER_SUM_TOLERANCE) for record in without_timings(local / name)
    ]
    assert without_timings(cluster / name) == expected, name


def test_a_train_job_requeues_itself_ahead_of_its_end_and_resumes(tiny_runs, slurm_cluster):
    """REQUEUED's job stopped ahead of its end, saved and requeued itself at least twice,
    then finished in the same job (no resubmission: one sbatch call), resuming each time;
    its models and metrics equal the local run's (test above)."""
    log = tiny_runs["log"]
    run = REQUEUED
    job = train_job_id(log, run)
    starts = job_starts(log, slurm_cluster, job)
    states = [state for _, state, _ in starts]
    assert states[-1] == "COMPLETED" and len(states) >= 3, starts
    assert set(states[:-1]) == {"REQUEUED"}, starts
    # The log holds the last attempt (Snakemake removes a job's log before it runs).
    train_log = (tiny_runs["cluster"] / "logs" / "train" / f"{run}.log").read_text()
    assert f"SLURM job {job} ends in" in train_log
    assert "resuming after iteration" in train_log or "resuming after epoch" in train_log
    # The run's report lists every start of the job, each stopped ahead of its end but
    # the last.
    report = json.loads(
        (tiny_runs["cluster"] / "results" / "train" / run / "report.json").read_text()
    )
    attempts = report["attempts"]
    assert [a["slurm_restart"] for a in attempts] == list(range(len(starts))), attempts
    assert {a["slurm_job"] for a in attempts} == {job}
    for attempt in attempts[:-1]:
        assert attempt["ended_how"].startswith("stopped at epoch "), attempt
        assert attempt["ended_how"].split("; ")[0].endswith(" on the SLURM job's coming end")
        assert 0 < attempt["wall_seconds"] < TRAIN_MINUTES * 60
    assert attempts[-1]["ended_how"] == "finished"
    assert [a["resumed_after"] for a in attempts] == sorted(a["resumed_after"] for a in attempts)


@pytest.mark.parametrize("run", list(FAILING_RUNS))
def test_a_failing_train_job_fails_once_and_is_not_requeued(tiny_runs, slurm_cluster, run):
    """A user error (status 2 of the stage script) in a requeueable job (sbatch --requeue)
    ends it FAILED, started once, and Snakemake submits it once (no retries); a run out of
    requeues ends FAILED after its last one. The job's exit code is that of the Snakemake
    process in the job, 1 for a failed rule."""
    log = tiny_runs["log"]
    job = train_job_id(log, run)
    starts = job_starts(log, slurm_cluster, job)
    requeues = FAILING_RUNS[run].get("max_requeues", 0)
    assert starts == [(job, "REQUEUED", "0:0")] * requeues + [(job, "FAILED", "1:0")]
    (call,) = [line for line in log.splitlines() if "sbatch call:" in line and f"/{run}/" in line]
    assert "--requeue" in call
    lines = (tiny_runs["cluster"] / "logs" / "train" / f"{run}.log").read_text().splitlines()
    assert FAILING_LAST_LINES[run] in lines[-1], lines[-5:]


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
            # Keyed by a job's first output (a benchmark point has its DLLogger log too).
            first_output = fields["output"].split(", ")[0]
            resources[first_output] = dict(item.split("=", 1) for item in listed)
    train = resources["results/train/gpu2"]
    # A gpu limit in the workflow profile (profiles/default) wins over this profile's and
    # clamps every rule's gpu to it: with 0, GPU jobs would be submitted without GPUs.
    assert train["gpu"] == "2", "a gpu limit in profiles/default clamps the rules' gpu"
    assert (train["cpus_per_gpu"], train["mem_mb_per_cpu"]) == ("8", "4000")
    assert resources["results/bench_train/float32/n4_b32.json"]["gpu"] == "4"
    assert resources["results/train/cpu_fp32"]["gpu"] == "0"


def test_two_workers_run_on_slurm_as_two_tasks(tiny_runs):
    """The two-worker run is one sbatch job of two srun tasks, one worker each, with one
    CPU thread each, as the local launcher gave its two workers."""
    log = tiny_runs["log"]
    (train_call,) = [
        line for line in log.splitlines() if "sbatch call:" in line and TWO_WORKERS in line
    ]
    assert "--nodes=1" in train_call and "--ntasks=2" in train_call
    assert "--cpus-per-task=1" in train_call

    logs = {
        where: (tiny_runs[where] / "logs" / "train" / f"{TWO_WORKERS}.log").read_text()
        for where in ("local", "cluster")
    }
    assert "srun --ntasks=2" in logs["cluster"] and "srun" not in logs["local"]
    for text in logs.values():
        assert "rank 0 of 2" in text and "rank 1 of 2" in text
        assert text.count("OMP_NUM_THREADS=1,") == 2, "each worker trains on one thread"


def write_one_node_profile(workdir):
    """profiles/slurm for a cluster of one node: the train job asks one node in all."""
    profile = yaml.safe_load((workdir / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["train"].update(nodes=1, runtime=TRAIN_MINUTES)
    folder = workdir / ONE_NODE_PROFILE
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))


def test_a_preempted_train_job_saves_its_position_and_resumes_when_requeued(
    tiny_runs, slurm_cluster, tmp_path
):
    """SLURM preempts the running train job (PreemptMode=REQUEUE) for a job of a higher
    partition: training gets SIGTERM, saves its position and exits; SLURM requeues the
    job, which resumes there once the urgent job is done, in the same `snakemake
    --profile` command. The model equals the local run's byte for byte."""
    workdir = tmp_path / "workflow"
    shutil.copytree(tiny_runs["cluster"], workdir, symlinks=True)
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["training"]["runs"][PREEMPTED] = {"epochs": REQUEUED_EPOCHS}
    write_config(workdir / "preempt.yaml", config)
    environment = {**os.environ, **cluster_environment(slurm_cluster)}
    workflow = RunningSnakemake(
        workdir,
        *("--profile", ONE_NODE_PROFILE, "--configfile=preempt.yaml", *ONE_THREAD, "--verbose"),
        f"results/train/{PREEMPTED}",
        env=cluster_environment(slurm_cluster),
    )
    train_log = workdir / "logs" / "train" / f"{PREEMPTED}.log"
    epoch_2 = f"epoch 2/{REQUEUED_EPOCHS} batch "
    workflow.wait_until(
        lambda: train_log.exists() and epoch_2 in train_log.read_text(), "epoch 2 logged a batch"
    )
    cpus = subprocess.run(
        ["sinfo", "--noheader", "--format=%c"],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout.split()[0]
    subprocess.run(
        ["sbatch", f"--partition={URGENT_PARTITION}", f"--cpus-per-task={cpus}", "--mem=100"]
        + ["--job-name=urgent", "--output=/dev/null", "--wrap=sleep 2"],
        check=True,
        capture_output=True,
        env=environment,
    )
    assert workflow.finish() == 0, workflow.output()[-6000:]
    log = workflow.output()

    job = train_job_id(log, PREEMPTED)
    starts = job_starts(log, slurm_cluster, job)
    states = [state for _, state, _ in starts]
    assert states[-1] == "COMPLETED" and len(states) >= 2, starts
    attempts = json.loads((workdir / "results/train" / PREEMPTED / "report.json").read_text())[
        "attempts"
    ]
    assert attempts[0]["ended_how"].split("; ")[0].endswith(" on SIGTERM"), attempts
    assert [a["slurm_restart"] for a in attempts] == list(range(len(attempts)))
    assert attempts[-1]["ended_how"] == "finished"
    name = f"model-{REQUEUED_EPOCHS:04d}.params"
    preempted = workdir / "results/train" / PREEMPTED / name
    local = tiny_runs["local"] / "results/train" / REQUEUED / name
    assert preempted.read_bytes() == local.read_bytes()
