"""Stopping and resuming a training run inside an epoch: a stop signal, or a kill without
warning after a state written by time, and the run resumed to the same bytes as a run
never interrupted (CPU, the same thread count in one process tree)."""

import json
import logging
import multiprocessing
import os
import random
import signal

import pytest
from helpers.tiny import TINY_SETTINGS, tiny_job

from resnet_recipe.training import checkpoints, interruption, loop
from resnet_recipe.training import run as training

# Two epochs of 6 iterations (48 images, batches of 8).
SETTINGS = TINY_SETTINGS.replace(epochs=2)
EPOCH_ITERATIONS = 6
ITERATIONS = 2 * EPOCH_ITERATIONS


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    """The run trained once without a stop: its run folder."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    training.train(tiny_job(tiny_data, folder, SETTINGS))
    return folder / "run"


def outputs(run_dir):
    """{name: bytes} of the exported models, and the metrics less their timings."""
    models = {path.name: path.read_bytes() for path in sorted(run_dir.glob("model-*"))}
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timings = {"images_per_s", "epoch_seconds"}
    return models, [{k: v for k, v in m.items() if k not in timings} for m in metrics]


def logged_steps(folder):
    """The steps of the run's DLLogger log, and those of its TensorBoard loss, as a
    reader sees them: a resumed run shows each step once, as a run never stopped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (state_dir,) = (folder / "state").iterdir()
    events = EventAccumulator(str(state_dir / "tensorboard"))
    events.Reload()
    with open(folder / "run" / "dllogger.json") as handle:
        steps = [json.loads(line[5:])["step"] for line in handle if "step" in line]
    return steps, [event.step for event in events.Scalars("train/loss")]


def attempts_listed(folder):
    """The attempts in the run's report.json, each checked for what every one holds."""
    listed = json.loads((folder / "run" / "report.json").read_text())["attempts"]
    for number, attempt in enumerate(listed, 1):
        assert attempt["attempt"] == number
        assert attempt["wall_seconds"] >= 0 and attempt["started"] <= attempt["ended"]
        assert attempt["slurm_job"] is None and attempt["slurm_restart"] == 0
    return listed


def positions_saved(folder):
    (state_dir,) = (folder / "state").iterdir()
    return [position for position, _ in checkpoints._positions(str(state_dir))]


def signal_at(iteration, signum):
    """A TrainingLoop.step that sends this process `signum` after global `iteration`."""
    original = loop.TrainingLoop.step

    def step(self, device_batches, global_iteration):
        result = original(self, device_batches, global_iteration)
        if global_iteration == iteration:
            os.kill(os.getpid(), signum)
        return result

    return step


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_saves_the_position_and_the_resumed_run_is_the_same(
    tiny_data, tmp_path, monkeypatch, caplog, uninterrupted, signum
):
    stop_after = random.randrange(ITERATIONS - 1)  # global iteration from 0, never the last
    epoch, iteration = stop_after // EPOCH_ITERATIONS + 1, stop_after % EPOCH_ITERATIONS + 1
    job = tiny_job(tiny_data, tmp_path, SETTINGS)
    monkeypatch.setattr(loop.TrainingLoop, "step", signal_at(stop_after, signum))
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        with pytest.raises(interruption.RunStopped) as stopped:
            training.train(job)
    name = signal.Signals(signum).name
    assert f"stopped at epoch {epoch} iteration {iteration} on {name}; state saved in" in str(
        stopped.value
    ), f"stopped after global iteration {stop_after}"
    assert stopped.value.exit_status == interruption.STOPPED_TO_RESUME
    assert not (tmp_path / "run").exists()
    assert positions_saved(tmp_path)[-1] == (epoch - 1, iteration) or iteration == EPOCH_ITERATIONS
    assert signal.getsignal(signum) is not None  # the previous handler is back
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        training.train(job)
    if iteration < EPOCH_ITERATIONS:
        assert f"resuming after iteration {iteration} of epoch {epoch}" in caplog.text
        assert f"skipped the {iteration} batches of epoch {epoch}" in caplog.text
    assert outputs(tmp_path / "run") == outputs(uninterrupted), f"stopped after {stop_after}"
    assert logged_steps(tmp_path) == logged_steps(uninterrupted.parent)
    first, second = attempts_listed(tmp_path)
    assert first["ended_how"] == str(stopped.value)
    assert first["resumed_after"] == [0, 0]
    # A stop at an epoch's last iteration saves that epoch's end.
    assert second["resumed_after"] == (
        [epoch - 1, iteration] if iteration < EPOCH_ITERATIONS else [epoch, 0]
    )
    assert second["ended_how"] == "finished"


def train_killed_in(job, iteration):
    """Train `job` in this (spawned) process and SIGKILL it inside global `iteration`,
    after the iteration's update and before anything saves it."""
    loop.TrainingLoop.step = signal_at(iteration, signal.SIGKILL)
    training.train(job)


def test_a_kill_without_warning_after_a_state_by_time_resumes_to_the_same(
    tiny_data, tmp_path, caplog, uninterrupted
):
    """States by time after every iteration (state_every_minutes 1e-6); the run killed
    inside an iteration at random, not the first of an epoch, in a child process: its
    last state is the previous iteration's, inside the epoch, and the run started again
    (in this process) resumes there."""
    kill_in = random.choice([i for i in range(1, ITERATIONS) if i % EPOCH_ITERATIONS])
    # The position of the state before the kill.
    epoch, iteration = kill_in // EPOCH_ITERATIONS + 1, kill_in % EPOCH_ITERATIONS
    job = tiny_job(tiny_data, tmp_path, SETTINGS.replace(state_every_minutes=1e-6))
    child = multiprocessing.get_context("spawn").Process(
        target=train_killed_in, args=(job, kill_in)
    )
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL, f"killed in global iteration {kill_in}"
    assert not (tmp_path / "run").exists()
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        training.train(job)
    assert f"resuming after iteration {iteration} of epoch {epoch}" in caplog.text
    assert outputs(tmp_path / "run") == outputs(uninterrupted), f"killed in {kill_in}"
    assert logged_steps(tmp_path) == logged_steps(uninterrupted.parent)
    killed, resumed = attempts_listed(tmp_path)
    assert killed["ended_how"] == (
        f"killed: no end recorded; its last state was after iteration {iteration} of epoch {epoch}"
    )
    assert resumed["resumed_after"] == [epoch - 1, iteration]
    assert resumed["ended_how"] == "finished"


def test_an_uninterrupted_run_lists_one_attempt(uninterrupted):
    (attempt,) = attempts_listed(uninterrupted.parent)
    assert attempt["resumed_after"] == [0, 0] and attempt["ended_how"] == "finished"
