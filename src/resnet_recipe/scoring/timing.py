"""Timing that is honest about the device: every timed interval ends with a device
synchronisation, and the first iterations (graph building, cuDNN autotuning) are never timed.

    TimedBatches(batches, net)      per-batch latency, from asking for a batch to its output
    time_forward(net, batches)      the latency pass: every batch waited for
    time_batch_ends(run, batches, epochs)  the original's throughput: batches not waited for
    time_training_epochs(step, ...) wall seconds of training epochs
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


def time_batch_ends(run, batches, epochs, clock=time.perf_counter):
    """Seconds per batch of each of `epochs` passes over `batches`, measured as the original
    recipe measured its benchmarks (fit.py L379-403 at its first release): the mean interval
    between the ends of consecutive batches, the first batch of each epoch left out.

    run(device_batches) hands one iteration to the device and is not waited for, as the
    original's batch-end callback waited for nothing (--no-metrics). Two waits per epoch
    bound the interval, outside the batches it counts: the first batch, which is left out,
    is waited for (mx.nd.waitall()) before the clock starts, and the epoch ends with
    mx.nd.waitall() before the clock is read. The interval therefore holds exactly the work
    of the other batches; the original read the clock at both ends without a wait, which in
    a steady stream amounts to the same. Without the first wait the interval would also
    hold what is left of the first batch, one batch too many over the epoch (11% at 10
    batches). An epoch's time per batch is that interval over its batches but the first.
    """
    if len(batches) < 2:
        raise UserError(f"{len(batches)} iterations per epoch: at least 2 are needed to time")
    per_batch = []
    for _ in range(epochs):
        started = None
        for device_batches in batches:
            run(device_batches)
            if started is None:
                mx.nd.waitall()
                started = clock()
        mx.nd.waitall()
        per_batch.append((clock() - started) / (len(batches) - 1))
    return per_batch


def time_training_epochs(step, batches, epochs, clock=time.perf_counter, on_epoch=None):
    """Wall seconds of `epochs` passes over `batches` through `step(device_batches,
    iteration)`, each ending with mx.nd.waitall(). One untimed iteration runs first (graph
    building, autotuning), whatever the warmup epochs. on_epoch(epoch, seconds) is called
    between epochs, outside the timed intervals."""
    step(next(iter(batches)), 0)  # a new iterator continues the stream: one batch taken
    mx.nd.waitall()
    iteration = 1
    epoch_seconds = []
    for epoch in range(1, epochs + 1):
        started = clock()
        for device_batches in batches:
            step(device_batches, iteration)
            iteration += 1
        mx.nd.waitall()
        epoch_seconds.append(clock() - started)
        if on_epoch is not None:
            on_epoch(epoch, epoch_seconds[-1])
    return epoch_seconds
