"""Timing: what is timed and what is not (the first iteration, the warmup epochs), and
that every timed interval waits for the device."""

from types import SimpleNamespace

import mxnet as mx
import pytest

from resnet_recipe.data import pipelines
from resnet_recipe.scoring import timing


def test_epoch_throughput_leaves_out_the_warmup_epochs():
    rates, mean = timing.epoch_throughput([10.0, 1.0, 2.0], 100, warmup_epochs=1)
    assert rates == [10.0, 100.0, 50.0]
    assert mean == pytest.approx(200 / 3)  # 200 images in 3 s: the harmonic mean
    assert timing.epoch_throughput([10.0, 1.0, 2.0], 100, 0)[1] == pytest.approx(300 / 13)
    with pytest.raises(ValueError, match="warmup_epochs"):
        timing.epoch_throughput([1.0, 1.0], 100, warmup_epochs=2)


def test_the_first_iteration_is_never_timed_even_without_warmup_epochs():
    events = []
    batches = pipelines.Batches(lambda: ["batch"], 3, [mx.cpu()])

    def clock():
        events.append("clock")
        return float(len(events))

    timed = timing.time_training_epochs(
        lambda batch, iteration: events.append(iteration), batches, 2, clock
    )
    # One untimed iteration, then each epoch's iterations between two clock readings, one
    # more after the epoch's first batch (from which the original's interval starts).
    epoch = ["clock", 1, "clock", 2, 3, "clock"]
    assert events == [0, *epoch, *[event if event == "clock" else event + 3 for event in epoch]]
    # (wall seconds, seconds per batch after the first), the clock counting events: 5
    # events from the first reading to the last; 3 after the first batch over 2 batches.
    assert timed == [(5.0, 1.5), (5.0, 1.5)]


def test_time_forward_waits_for_every_output():
    waited = []

    class Output:
        def wait_to_read(self):
            waited.append(True)

    batches = pipelines.Batches(lambda: [SimpleNamespace(data=None)], 5, [mx.cpu()])
    seconds, total = timing.time_forward(lambda data: Output(), batches)
    assert len(seconds) == len(waited) == 5
    assert sum(seconds) <= total


def test_batch_ends_leave_out_each_epochs_first_batch_and_wait_once_per_epoch(monkeypatch):
    # A fake device: each batch handed over moves the clock by its own duration, as if the
    # host were held back by it. The first of each epoch lasts 100 s and must not count.
    durations = iter([100.0, 1.0, 2.0, 3.0, 100.0, 4.0, 4.0, 4.0])
    now = [0.0]
    events = []

    def run(device_batches):
        now[0] += next(durations)
        events.append("run")

    def waitall():
        events.append("wait")

    monkeypatch.setattr(timing.mx.nd, "waitall", waitall)
    batches = pipelines.Batches(lambda: ["batch"], 4, [mx.cpu()])
    per_batch = timing.time_batch_ends(run, batches, 2, clock=lambda: now[0])
    assert per_batch == [pytest.approx(2.0), pytest.approx(4.0)]
    # No wait between the counted batches: one after the left-out first, one closing.
    epoch = ["run", "wait"] + ["run"] * 3 + ["wait"]
    assert events == epoch + epoch
    with pytest.raises(ValueError, match="at least 2"):
        timing.time_batch_ends(run, pipelines.Batches(lambda: ["batch"], 1, [mx.cpu()]), 1)
