"""Training over MXNet's distributed kvstore, launched on loopback by the local launcher:
the same result as one process over as many devices, resume after a kill, and failures
that end the whole job in bounded time."""

import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy
import pytest
from helpers import tiny

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.training import interruption, launcher
from resnet_recipe.training import run as training
from resnet_recipe.workflow_support.settings import Distributed

# Global batch 16 both ways: 2 workers x 1 context x 8, or 1 worker x 2 contexts x 8.
TINY_SETTINGS = tiny.TINY_SETTINGS.replace(epochs=2, lr_steps=(), log_interval=1)
LOOPBACK = Distributed(interface="lo", connect_timeout=300)
# Weights, BN running statistics and losses of the two set-ups may differ only by float32
# rounding: the gradients of the two devices are summed by the parameter servers instead of
# the local kvstore. (Measured: bitwise equal.) Every process of both set-ups computes on one
# CPU thread: MXNet's CPU kernels order their sums by the thread count, and this run at a
# high learning rate turns that rounding into a training loss of 0.91 instead of 0.67 after
# one epoch. Both start from the first device's BN statistics after the first iteration, the
# Trainer's first reduction copying them to every device.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-5


def job_for(tiny_data, folder, **settings):
    return tiny.tiny_job(
        tiny_data, folder, TINY_SETTINGS.replace(**settings), distributed_settings=LOOPBACK
    )


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def final_weights(out, epoch):
    _, args, aux = mx.model.load_checkpoint(str(out / "model"), epoch)
    return {name: value.asnumpy() for name, value in {**args, **aux}.items()}


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    """The same run as 1 worker x 2 CPU contexts and as 2 workers x 1 CPU context, every
    process on one CPU thread."""
    single = tmp_path_factory.mktemp("single")
    job_path = write_job(job_for(tiny_data, single, cpu_contexts=2), single / "job.json")
    subprocess.run(
        [sys.executable, "-m", "resnet_recipe.training.launcher", "worker", str(job_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
        timeout=600,
    )
    spread = tmp_path_factory.mktemp("spread")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "2")  # the local launcher gives each worker one
        training.train(job_for(tiny_data, spread, nodes=2))
    return single / "run", spread / "run"


def test_two_workers_match_one_worker_with_two_devices(two_runs):
    assert_same_run(*two_runs)


def assert_same_run(single, spread):
    """The two-worker run `spread` ended where the one-process run `single` did."""
    single_metrics, spread_metrics = read_metrics(single), read_metrics(spread)
    assert [m["epoch"] for m in spread_metrics] == [1, 2]
    for one, two in zip(single_metrics, spread_metrics, strict=True):
        for name in ("train_loss", "train_top1", "lr", "val_loss", "val_top1", "val_top5"):
            assert two[name] == pytest.approx(one[name], rel=RELATIVE_TOLERANCE), name
    weights_single, weights_spread = final_weights(single, 2), final_weights(spread, 2)
    assert weights_spread.keys() == weights_single.keys()
    for name, value in weights_single.items():
        numpy.testing.assert_allclose(
            weights_spread[name],
            value,
            rtol=RELATIVE_TOLERANCE,
            atol=ABSOLUTE_TOLERANCE,
            err_msg=name,
        )
    report = json.loads((spread / "report.json").read_text())
    assert (report["nodes"], report["global_batch"]) == (2, 16)


# Two-worker runs repeated with the CPU busy: the engine's scheduling then varies the
# order of operations the code leaves unordered (recipe.broadcast_first_parameters).
LOADED_REPEATS = 3
BURNERS = 2
BURNER_SECONDS = 300


def test_two_workers_match_one_worker_with_the_machine_busy(two_runs, tiny_data, tmp_path):
    single, _ = two_runs
    burners = [
        subprocess.Popen(["timeout", str(BURNER_SECONDS), "yes"], stdout=subprocess.DEVNULL)
        for _ in range(BURNERS)
    ]
    try:
        for repeat in range(LOADED_REPEATS):
            folder = tmp_path / f"loaded{repeat}"
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("OMP_NUM_THREADS", "2")
                training.train(job_for(tiny_data, folder, nodes=2))
            assert_same_run(single, folder / "run")
    finally:
        for burner in burners:
            burner.terminate()  # timeout passes SIGTERM on to yes; SIGKILL would orphan it
            burner.wait()


def test_the_run_moved_the_weights(two_runs, tiny_data):
    """The comparison above means something only if training changed the weights."""
    single, _ = two_runs
    metrics = read_metrics(single)
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


def test_only_one_worker_writes_state_and_outputs(two_runs):
    _, spread = two_runs
    state = spread.parent / "state"
    (digest,) = [p for p in state.iterdir() if p.is_dir()]
    assert sorted(p.name for p in digest.iterdir()) == [
        "attempts.jsonl",
        "dllogger.json",
        "epoch-0001",
        "epoch-0002",
        "exports",
        "tensorboard",
    ]
    assert sorted(p.name for p in (digest / "exports").iterdir()) == ["epoch-0001", "epoch-0002"]
    assert sorted(p.name for p in spread.iterdir()) == [
        "dllogger.json",
        "metrics.jsonl",
        "model-0001.params",
        "model-0002.params",
        "model-symbol.json",
        "report.json",
    ]


def write_job(job, path):
    """`job` as a launcher job file at path."""
    path.write_text(job.to_json())
    return path


def launcher_process(job, log_path):
    """A separate Python that launches `job` (through a JSON job file), like a train job
    of the workflow, logging to log_path."""
    job_path = write_job(job, log_path.with_suffix(".json"))
    code = (
        "import sys\n"
        "from resnet_recipe.training import launcher\n"
        "from resnet_recipe.training.job import TrainingJob\n"
        "from resnet_recipe.workflow_support import progress\n"
        "job = TrainingJob.from_json(open(sys.argv[1]).read())\n"
        "progress.run_logged(sys.argv[2], launcher.launch_training, job=job)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(job_path), str(log_path)])


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_worker_killed_mid_run_fails_the_job_and_the_run_resumes(tiny_data, tmp_path):
    """SIGKILL of one worker after epoch 1 was saved: the launcher notices, stops every
    other role and fails naming that worker (no role waits forever for the dead one);
    running the same train() again resumes after the saved epoch."""
    job = job_for(tiny_data, tmp_path, nodes=2, epochs=3)
    log_path = tmp_path / "first.log"
    first = launcher_process(job, log_path)
    state = tmp_path / "state"
    try:
        wait_for(lambda: any(state.glob("*/epoch-0001")), 300, "the state of epoch 1")
        # Arguments are NUL-separated in /proc/PID/cmdline.
        victim = role_processes(tmp_path, "resnet_recipe.training.launcher\0worker")[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert first.wait(120) != 0
        assert time.monotonic() - killed < 60, "the dead worker was not noticed in bounded time"
    finally:
        first.kill()
        first.wait()
    assert "exited with status -9" in log_path.read_text()
    wait_for(lambda: not role_processes(tmp_path), 30, "the other roles to end")
    assert not (tmp_path / "run").exists()
    # The state root also holds the job file of the launcher: only folders have epochs.
    saved = sorted(p.name for p in state.glob("*/epoch-*"))

    second_log = tmp_path / "second.log"
    second = launcher_process(job, second_log)
    assert second.wait(600) == 0
    log = second_log.read_text()
    assert f"resuming after epoch {int(saved[-1][-4:])}" in log
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    metrics = read_metrics(tmp_path / "run")
    assert [m["epoch"] for m in metrics] == [1, 2, 3]


def role_processes(folder, role=""):
    """Pids of the roles (scheduler, servers, workers) whose command line names a job
    file under `folder` (and holds `role`)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in command and role in command:
            pids.append(int(pid))
    return pids


def test_a_failing_worker_fails_the_job_with_its_error(tiny_data, tmp_path, caplog):
    # A missing validation index makes every worker raise right after connecting.
    job = job_for(tiny_data, tmp_path, nodes=2).replace(val_idx=str(tmp_path / "missing.idx"))
    started = time.monotonic()
    # A worker's user error (exit status 2) reaches the job as that worker's one line.
    with pytest.raises(UserError, match=r"worker \d: .*missing\.idx"):
        training.train(job)
    assert time.monotonic() - started < 120, "the failure was not noticed in bounded time"
    assert not role_processes(tmp_path)


def test_unreachable_scheduler_fails_within_the_connect_timeout(tmp_path, monkeypatch):
    """Workers that cannot reach the scheduler (here: a port nobody listens on) end the
    job after connect_timeout seconds instead of waiting forever."""
    port = launcher.free_port("127.0.0.1")
    worker = launcher.role_environment("worker", 1, "127.0.0.1", port, "lo")
    code = "import mxnet; mxnet.kv.create('dist_sync')"
    started = time.monotonic()
    with pytest.raises(UserError, match="only 0 of 1 workers reached the scheduler"):
        launcher.supervise(
            [("worker 0", [sys.executable, "-c", code], worker)],
            1,
            connect_timeout=5,
            scheduler=f"127.0.0.1:{port}",
        )
    assert time.monotonic() - started < 60


def test_unknown_interface_is_named():
    with pytest.raises(ValueError, match="distributed.interface 'nosuch0'"):
        launcher.interface_address("nosuch0")


def test_loopback_address():
    assert launcher.interface_address("lo") == "127.0.0.1"


def test_roles_never_inherit_what_overrides_the_interface(monkeypatch):
    """DMLC_NODE_HOST, PORT or DMLC_USE_KUBERNETES in the job's environment would make
    ps-lite bind elsewhere than distributed.interface (all interfaces, for the last)."""
    for name in launcher.OVERRIDING_VARIABLES:
        monkeypatch.setenv(name, "1")
    environment = launcher.role_environment("server", 2, "127.0.0.1", 9000, "lo")
    assert not set(launcher.OVERRIDING_VARIABLES) & set(environment)
    assert (environment["DMLC_INTERFACE"], environment["DMLC_PS_ROOT_URI"]) == ("lo", "127.0.0.1")


def test_the_node_agent_does_not_import_mxnet():
    # Importing MXNet starts the ps-lite role DMLC_ROLE names: the node agent under srun
    # (`launcher node`) only starts its server and worker processes.
    code = (
        "import sys\nfrom resnet_recipe.training import launcher\nprint('mxnet' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_workers_user_error_reaches_the_launcher_as_its_one_line():
    """A worker that stops on a user error (a diverged run, a missing file) exits with
    status 2 and one line; the launcher passes that line on as a user error of its own."""
    code = (
        "from resnet_recipe.files.user_errors import UserError, one_line_errors\n"
        "with one_line_errors('worker'):\n"
        "    raise UserError('training.lr_per_256: the loss is NaN')\n"
    )
    with pytest.raises(UserError) as failure:
        launcher.supervise(
            [("worker 0", [sys.executable, "-c", code], dict(os.environ))],
            1,
            connect_timeout=None,
            scheduler="127.0.0.1:1",
        )
    assert str(failure.value) == "worker 0: worker: error: training.lr_per_256: the loss is NaN"


def test_a_stop_signal_to_the_job_stops_both_workers_and_the_run_resumes_exactly(
    two_runs, tiny_data, tmp_path
):
    """SIGTERM to the launcher (a train job) during epoch 1: both workers stop at the same
    iteration, the first writes the state, the job exits with 75; the job run again ends
    with the exports of the uninterrupted two-worker run, byte for byte: BN running
    statistics too, as the state gives each worker's devices their own back."""
    _, uninterrupted = two_runs
    job = job_for(tiny_data, tmp_path, nodes=2)
    log_path = tmp_path / "first.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "2")  # as the uninterrupted run's workers
        first = launcher_process(job, log_path)
        try:
            wait_for(lambda: "epoch 1/2 batch 1/3" in read_if_any(log_path), 300, "iteration 1")
            first.send_signal(signal.SIGTERM)
            assert first.wait(120) == interruption.STOPPED_TO_RESUME
        finally:
            first.kill()
            first.wait()
        log = log_path.read_text()
        assert log.count("stopped at epoch") >= 2, "both workers stop"  # each says so
        assert not (tmp_path / "run").exists()
        second = launcher_process(job, tmp_path / "second.log")
        assert second.wait(600) == 0
    assert "resuming after" in (tmp_path / "second.log").read_text()
    for epoch in (1, 2):
        resumed, expected = (
            final_weights(tmp_path / "run", epoch),
            final_weights(uninterrupted, epoch),
        )
        assert [name for name in expected if (resumed[name] != expected[name]).any()] == []
        name = f"model-{epoch:04d}.params"
        assert (tmp_path / "run" / name).read_bytes() == (uninterrupted / name).read_bytes()


def read_if_any(path):
    return path.read_text() if path.exists() else ""


def test_a_node_agent_that_says_it_stopped_stops_the_run():
    """Under srun the node agents exit 0 after their worker stopped to be resumed (srun's
    --kill-on-bad-exit would otherwise end the other nodes' tasks in the middle of the
    same stop) and say so in a line: the launcher raises RunStopped with the stop's words
    (and the job requeues itself), not 'all workers finished'."""
    said = "worker: stopped at epoch 3 iteration 10 on SIGTERM; state saved in 0.3 s"
    code = f"print({launcher.NODE_STOPPED + said!r})"
    with pytest.raises(interruption.RunStopped) as stopped:
        launcher.supervise(
            [("srun", [sys.executable, "-c", code], dict(os.environ))],
            1,
            connect_timeout=None,
            scheduler="127.0.0.1:1",
        )
    assert said in str(stopped.value)
