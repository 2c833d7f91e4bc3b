"""What a user watches of a training run, from one finished tiny run: progress lines that
tell the truth (interval rates of finished work, a run ETA that includes validation and
the later epochs), its DLLogger log and its TensorBoard events, read back by TensorBoard's
own reader and served by a TensorBoard server on the loopback interface."""

import json
import logging
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.dllogger_lines import read_checked, read_steps
from helpers.tiny import TINY_PIPELINE, TINY_SETTINGS, tiny_job

from resnet_recipe.training import run as training

PROGRESS = re.compile(
    r"epoch (\d+)/\d+ batch \d+/\d+ \| ([\d.]+) img/s .* run [\d:]+ \(([\d.]+) s\)(.*)$"
)
DONE = re.compile(r"epoch (\d+)/\d+ done: .* \| ([\d.]+) img/s \|")
EPOCHS, BATCHES, INTERVAL = 5, 6, 2
BATCH = TINY_SETTINGS.batch_per_device  # one CPU context


class Records(logging.Handler):
    """The log lines of a run, and what its state folder held at the first progress line
    of epoch 5 (the DLLogger log's text, a copy of the TensorBoard folder): what a user
    watching the run then saw."""

    def __init__(self, state_root):
        super().__init__(logging.INFO)
        self.state_root = state_root
        self.lines = []
        self.seen_live = None

    def emit(self, record):
        self.lines.append((record.created, record.getMessage()))
        if self.seen_live is None and record.getMessage().startswith("epoch 5/5 batch 2/"):
            (log,) = self.state_root.glob("*/dllogger.json")
            events = shutil.copytree(log.parent / "tensorboard", self.state_root.parent / "live")
            self.seen_live = log.read_text(), events


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    """(log lines as (time, text), the run's output folder, its state folder, what the
    state folder showed during epoch 5) of a run of 5 epochs of 6 batches at 32 px,
    logging every 2 batches."""
    folder = tmp_path_factory.mktemp("progress")
    # Long enough batches (32 px) that an interval is well above the clock's resolution.
    settings = TINY_SETTINGS.replace(epochs=EPOCHS, log_interval=INTERVAL)
    pipeline = TINY_PIPELINE.replace(image_size=32, val_resize=36)
    job = tiny_job(tiny_data, folder, settings, pipeline_settings=pipeline)
    records, logger = Records(Path(job.state_root)), logging.getLogger("resnet_recipe")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        training.train(job)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    (state_dir,) = Path(job.state_root).iterdir()
    return records.lines, Path(job.out_dir), state_dir, records.seen_live


def test_progress_rates_and_run_eta_match_the_finished_run(finished_run):
    lines = finished_run[0]
    progress = [(when, PROGRESS.search(text)) for when, text in lines if PROGRESS.search(text)]
    done = {int(m[1]): (when, float(m[2])) for when, text in lines if (m := DONE.search(text))}
    assert sorted(done) == [1, 2, 3, 4, 5] and len(progress) == 5 * 3
    end = done[5][0]
    # No forecast beats the machine: the epochs' own times drift, and the tolerance widens
    # by that drift: the spread of the epochs' rates, of the steady rates (first log line
    # to last) the forecasts rest on, epoch 1's included, and of the epochs' whole cycles
    # (from one epoch's end to the next: saving the state, training, validation). Saving
    # the state is a third to a half of this tiny run's cycle and varies with the file
    # system: the cycles differed by 20 to 44% over six runs on a quiet 2-core machine.
    rates = [done[epoch][1] for epoch in range(2, 6)]
    steady = [steady_rate(progress, epoch) for epoch in range(1, 6)]
    cycles = [done[epoch][0] - done[epoch - 1][0] for epoch in range(2, 6)]
    drift = max(spread(rates), spread(steady), spread(cycles))
    checked = 0
    for when, match in progress:
        epoch, eta, note = int(match[1]), float(match[3]), match[4]
        assert (note == " (training only)") == (epoch == 1)
        if epoch == 1:
            continue
        left = end - when  # 0.05 s: the ETA is logged to 0.1 s
        assert abs(eta - left) <= (0.1 + drift) * left + 0.05, (epoch, eta, left, drift)
        checked += 1
    assert checked == 4 * 3
    # The intervals' rates are of finished work and together cover the whole epoch: the
    # seconds they stand for add up to the epoch's training seconds. (Each interval's own
    # rate may differ from the epoch's by far more than the tolerance here when other work
    # shares the machine.) 0.02 s: the few statements between an epoch's last log line
    # and its end.
    for epoch in range(1, EPOCHS + 1):
        interval_rates = [float(match[2]) for _, match in progress if int(match[1]) == epoch]
        interval_seconds = sum(INTERVAL * BATCH / rate for rate in interval_rates)
        epoch_seconds = BATCHES * BATCH / done[epoch][1]
        assert abs(interval_seconds - epoch_seconds) <= 0.05 * epoch_seconds + 0.02, (
            epoch,
            interval_rates,
            done[epoch][1],
        )


def steady_rate(progress, epoch):
    """Batches per second of `epoch` from its first progress line to its last."""
    times = [when for when, match in progress if int(match[1]) == epoch]
    return (len(times) - 1) * INTERVAL / (times[-1] - times[0])


def spread(values):
    return (max(values) - min(values)) / min(values)


def test_the_logs_grow_while_the_run_trains(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dllogger_text, events_folder = finished_run[3]
    steps = [json.loads(line[5:])["step"] for line in dllogger_text.splitlines() if "step" in line]
    # Epochs 1 to 4 and their intervals, before this line's own.
    assert steps == [[e, i] if i else [e] for e in range(4) for i in (1, 3, 5, 0)]
    # Every event is on disk once logged: those of epochs 1 to 4, likewise.
    events = EventAccumulator(str(events_folder))
    events.Reload()
    assert [s.step for s in events.Scalars("train/loss")] == list(range(2, 25, 2))
    assert [s.step for s in events.Scalars("epoch/val_top1")] == [6, 12, 18, 24]


def test_the_dllogger_log_has_the_recipes_steps_keys_and_units(finished_run):
    _, out, state_dir, _ = finished_run
    path = out / "dllogger.json"
    # The run folder's copy is the log the state folder grew while training.
    assert path.read_text() == (state_dir / "dllogger.json").read_text()
    logs, units = read_checked(path)
    assert units["train.ips"] == units["val.ips"] == {"unit": "images/s"}
    assert units["val.latency_avg"] == {"unit": "s"}
    assert units["val.accuracy"] == units["train.loss"] == {"unit": None}
    steps = read_steps(path)
    # Per epoch from 0: its intervals (at the 0-based index of their last batch), then
    # the epoch; then the summary.
    in_order = []
    for epoch in range(EPOCHS):
        in_order += [(epoch, i) for i in range(INTERVAL - 1, BATCHES, INTERVAL)] + [(epoch,)]
    assert list(steps) == [*in_order, ()]
    intervals = [step for step in in_order if len(step) == 2]
    epochs = [step for step in in_order if len(step) == 1]
    assert all(len(data) == 1 for data in steps.values())
    for step in intervals:
        assert set(steps[step][0]) == {"train.loss", "train.ips", "train.lr"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for (epoch,), line in zip(epochs, metrics, strict=True):
        data = steps[(epoch,)][0]
        assert data["val.accuracy"] == line["val_top1"]
        assert data["val.top_k_accuracy_5"] == line["val_top5"]
        assert data["train.loss"] == line["train_loss"] and data["train.ips"] > 0
        assert data["val.ips"] > 0 and data["val.latency_avg"] > 0
        # The lr of an epoch's last interval is the epoch's last lr.
        assert steps[(epoch, BATCHES - 1)][0]["train.lr"] == line["lr"]
    summary = steps[()][0]
    assert summary["val.accuracy"] == max(line["val_top1"] for line in metrics)
    assert summary["train.loss"] == min(line["train_loss"] for line in metrics)
    # As the recipe's benchmark.py takes a run's epochs: one line of step [epoch] each.
    assert len([step for step in steps if len(step) == 1]) == EPOCHS
    assert logs[-1]["step"] == []


def test_tensorboard_reads_every_scalar_per_interval_and_per_epoch(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out, state_dir, _ = finished_run
    events = EventAccumulator(str(state_dir / "tensorboard"))
    events.Reload()
    interval_steps = [
        e * BATCHES + i for e in range(EPOCHS) for i in range(INTERVAL, BATCHES + 1, INTERVAL)
    ]
    for name in ("loss", "top1", "images_per_s", "lr", "loss_scale"):
        assert [s.step for s in events.Scalars(f"train/{name}")] == interval_steps, name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = read_steps(out / "dllogger.json")
    for line in metrics:
        line["val_images_per_s"] = steps[(line["epoch"] - 1,)][0]["val.ips"]
    names = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "images_per_s")
    for name in (*names, "val_images_per_s", "lr", "loss_scale"):
        scalars = events.Scalars(f"epoch/{name}")
        assert [s.step for s in scalars] == [e * BATCHES for e in range(1, EPOCHS + 1)], name
        assert [s.value for s in scalars] == pytest.approx([m[name] for m in metrics]), name
    assert all(s.value == 1.0 for s in events.Scalars("train/loss_scale"))
    losses = [s.value for s in events.Scalars("train/loss")]
    assert losses[-1] < losses[0]


def served_port(server, deadline):
    """The port a `tensorboard --port 0` process says it serves on, read from its stderr
    (by a thread, so that a silent server cannot block the test past the deadline)."""
    pattern = re.compile(r"TensorBoard \S+ at http://127\.0\.0\.1:(\d+)/")
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in server.stderr])
    reader.daemon = True
    reader.start()
    said = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            said.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if match := pattern.search(said[-1]):
            return int(match[1])
    raise AssertionError(f"tensorboard named no port in time; it said: {''.join(said)}")


def test_a_tensorboard_server_on_loopback_serves_the_runs_scalars(finished_run):
    state_root = finished_run[2].parent
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(state_root)]
    command += ["--host", "127.0.0.1", "--port", "0", "--load_fast", "false"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        port = served_port(server, deadline)
        run = f"{finished_run[2].name}/tensorboard"
        tags = {}
        while run not in tags and time.monotonic() < deadline:
            url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
            with urllib.request.urlopen(url, timeout=10) as response:
                tags = json.load(response)
            if run not in tags:
                time.sleep(0.2)  # its first load of the folder is still running
        assert run in tags, tags
        assert {"train/loss", "train/lr", "epoch/val_top1", "epoch/val_top5"} <= set(tags[run])
    finally:
        server.kill()
        server.wait()
