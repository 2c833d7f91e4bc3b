"""Timing that is honest about the device: every timed interval ends with a device
synchronisation, and the first iterations (graph building, cuDNN autotuning) are never timed.

    TimedBatches(batches, net)      per-batch latency, from asking for a batch to its output
    time_forward(net, batches)      the latency pass: every batch waited for
    time_epoch(run, batches)        a pass's wall seconds and the original's seconds per batch
    time_batch_ends(run, batches, epochs)  the original's throughput: batches not waited for
    time_training_epochs(step, ...) both measures of training epochs
    latency_summary(seconds)        {mean, p50, p90, p95, p99, max} in milliseconds
    epoch_throughput(...)           images/s per epoch and their mean after the warmup
"""

import time

import mxnet as mx
import numpy as np

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.results import LATENCY_PERCENTILES


def latency_summary(seconds):
    """{mean, p50, p90, p95, p99, max} in milliseconds of per-batch latencies in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000
    if values.size == 0:
        raise ValueError("no timed batches to summarise")
    summary = {"mean": float(values.mean())}
    summary.update({f"p{p}": float(np.percentile(values, p)) for p in LATENCY_PERCENTILES})
    summary["max"] = float(values.max())
    return summary


def harmonic_mean(values):
    return len(values) / sum(1 / value for value in values)


def epoch_throughput(epoch_seconds, images_per_epoch, warmup_epochs, option="benchmark.train"):
    """(images/s of every epoch, their harmonic mean after the first warmup_epochs), as the
    original benchmark.py averages its epochs (L69-72); `option` names the settings."""
    if warmup_epochs >= len(epoch_seconds):
        raise UserError(
            f"{option}.warmup_epochs ({warmup_epochs}) leaves none of the "
            f"{len(epoch_seconds)} epochs to measure: raise {option}.epochs"
        )
    rates = [images_per_epoch / seconds for seconds in epoch_seconds]
    return rates, harmonic_mean(rates[warmup_epochs:])


class TimedBatches:
    """One device's batches, each timed from the moment the loop asks for it to the moment
    the network's output of it is ready on the device (wait_to_read: the device sync).

        timed = TimedBatches(batches, net)
        for device_batches in timed:
            timed.forward(device_batches[0].data)
        timed.seconds  # one latency per forward

    It carries the contexts of `batches`, so evaluation.evaluate(timed.forward, timed, ...)
    times the scoring pass.
    """

    def __init__(self, batches, net, clock=time.perf_counter):
        self.batches = batches
        self.contexts = batches.contexts
        self.net = net
        self.clock = clock
        self.seconds = []
        self._asked = None

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        batches = iter(self.batches)
        while True:
            self._asked = self.clock()
            try:
                device_batches = next(batches)
            except StopIteration:
                return
            yield device_batches

    def forward(self, data):
        output = self.net(data)
        output.wait_to_read()
        self.seconds.append(self.clock() - self._asked)
        return output


def time_forward(net, batches, clock=time.perf_counter):
    """The inference benchmark's timed loop: every batch of `batches` (one device) through
    `net`, each waited for. Returns (per-batch seconds, total seconds)."""
    timed = TimedBatches(batches, net, clock)
    started = clock()
    for device_batches in timed:
        timed.forward(device_batches[0].data)
    return timed.seconds, clock() - started


def time_epoch(run, batches, clock=time.perf_counter):
    """(wall seconds, seconds per batch after the first) of one pass over `batches` through
    run(device_batches), which hands one iteration to the device and is not waited for.

    Wall seconds: from the clock reading before the first batch is asked for to the one
    after the closing mx.nd.waitall(). Seconds per batch: as the original recipe measured
    its benchmarks, training and inference alike (fit.py L379-413 at a8e1d1cd, its
    Gatherer): the mean interval between the ends of consecutive batches, the first batch
    left out, none of the counted batches waited for, as the original's batch-end callback
    waited for nothing (--no-metrics). Two waits bound that interval, outside the batches
    it counts: the first batch is waited for (mx.nd.waitall()) before the clock starts, and
    the pass ends with mx.nd.waitall() before the clock is read. The interval therefore
    holds exactly the work of the other batches; the original read the clock at both ends
    without a wait, which in a steady stream amounts to the same. Without the first wait
    the interval would also hold what is left of the first batch, one batch too many over
    the epoch (11% at 10 batches). The wall seconds include that one wait, as a training
    run's do at each of its log lines (training/loop.py).
    """
    if len(batches) < 2:
        raise UserError(f"{len(batches)} iterations per epoch: at least 2 are needed to time")
    started = clock()
    first_done = None
    for device_batches in batches:
        run(device_batches)
        if first_done is None:
            mx.nd.waitall()
            first_done = clock()
    mx.nd.waitall()
    ended = clock()
    return ended - started, (ended - first_done) / (len(batches) - 1)


def time_batch_ends(run, batches, epochs, clock=time.perf_counter):
    """Seconds per batch (time_epoch) of each of `epochs` passes over `batches` through
    run(device_batches): the original's throughput measure."""
    return [time_epoch(run, batches, clock)[1] for _ in range(epochs)]


def time_training_epochs(step, batches, epochs, clock=time.perf_counter, on_epoch=None):
    """(wall seconds, seconds per batch after the first) of each of `epochs` passes over
    `batches` through `step(device_batches, iteration)`, both as time_epoch measures them.
    One untimed iteration runs first (graph building, autotuning), whatever the warmup
    epochs. on_epoch(epoch, wall seconds) is called between epochs, outside the timed
    intervals."""
    step(next(iter(batches)), 0)  # a new iterator continues the stream: one batch taken
    mx.nd.waitall()
    iteration = 1

    def run(device_batches):
        nonlocal iteration
        step(device_batches, iteration)
        iteration += 1

    timed = []
    for epoch in range(1, epochs + 1):
        timed.append(time_epoch(run, batches, clock))
        if on_epoch is not None:
            on_epoch(epoch, timed[-1][0])
    return timed
