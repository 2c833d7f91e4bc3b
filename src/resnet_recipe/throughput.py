"""Throughput benchmarks, one point per call, and their summary in the original benchmark.py
report shape.

    bench_train(path, dtype=, gpus=, batch_per_device=, ...)  -> one training point's JSON
    bench_infer(path, dtype=, batch_size=, ...)                -> one inference point's JSON
    summarize(train_files, infer_files, train_path, infer_path) -> benchmark.py-shaped JSON

Timing is honest the same way everywhere: every timed interval ends with a device
synchronisation; nothing is computed or logged for metrics inside a timed loop; the first
iterations, which build the graph and let cuDNN pick its algorithms, are never timed.

Training (like the original's train.total_ips): E epochs of I iterations of the training
loop's own step (TrainingLoop.step: forward, backward, update), data loading included; an
epoch's images/s is I * global batch over its wall time, which ends with mx.nd.waitall().
The warmup epochs are left out and the rest averaged as the original does: the harmonic
mean, which for epochs of equal size is all their images over all their seconds. Per-
iteration latency percentiles are left out: the loop never waits for the device between
iterations (that is what makes it fast), so the host cannot see when one iteration ends
without adding a synchronisation that changes what is measured. latency_ms carries the
mean only: the timed seconds over the timed iterations.

Inference (the original's --only-inference val.total_ips): a freshly initialised,
hybridized network (throughput needs no trained weights) on one device; warmup iterations
untimed, then each batch timed from asking the input pipeline for it to its output being
ready (wait_to_read), so data loading counts, as it did in the original, which timed the
interval between consecutive batch ends of its validation iterator. images/s is the images
over the timed seconds: the batch size over the mean latency, which is also how the
original's later versions relate val.ips and val.latency_avg.
"""

import logging
import time

import mxnet as mx
import numpy as np

from resnet_recipe import devices, network, pipelines, precision, results, training
from resnet_recipe.listing import read_classes
from resnet_recipe.progress import Progress, format_duration

log = logging.getLogger(__name__)

DATA_SOURCES = ("dali", "synthetic")
# The original recipe's benchmark settings (benchmark.py -i 100 -e 12 -w 4, --num-examples
# per precision); the config's benchmark section defaults to the same values.
TRAIN_BENCH_DEFAULTS = {"data": "dali", "iterations": 100, "epochs": 12, "warmup_epochs": 4}
NUM_EXAMPLES = {"float16": 25600, "float32": 12800}
INFER_BENCH_DEFAULTS = {"data": "dali", "iterations": 100, "warmup_iterations": 20, "gpus": 1}
# Metric names of the original benchmark.py: train.total_ips and val.total_ips (images/s,
# data and compute) as its --only-inference version reports them; the latency keys (in
# seconds, latency_100 the slowest batch) as its later versions name them.
TRAIN_METRIC_KEYS = ("train.total_ips",)
INFER_METRIC_KEYS = (
    "val.total_ips",
    "val.latency_avg",
    *(f"val.latency_{p}" for p in results.LATENCY_PERCENTILES),
    "val.latency_100",
)
INFERENCE_WEIGHTS = "random initialisation: throughput does not depend on trained weights"


def latency_summary(seconds):
    """{mean, p50, p90, p95, p99, max} in milliseconds of per-batch latencies in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000
    if values.size == 0:
        raise ValueError("no timed batches to summarise")
    summary = {"mean": float(values.mean())}
    summary.update({f"p{p}": float(np.percentile(values, p)) for p in results.LATENCY_PERCENTILES})
    summary["max"] = float(values.max())
    return summary


def harmonic_mean(values):
    return len(values) / sum(1 / value for value in values)


def epoch_throughput(epoch_seconds, images_per_epoch, warmup_epochs):
    """(images/s of every epoch, their harmonic mean after the first warmup_epochs)."""
    if warmup_epochs >= len(epoch_seconds):
        raise ValueError(
            f"benchmark.train.warmup_epochs ({warmup_epochs}) leaves none of the "
            f"{len(epoch_seconds)} epochs to measure: raise benchmark.train.epochs"
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

    It carries the contexts of `batches`, so training.evaluate(timed.forward, timed, ...)
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


def benchmark_input(pipeline_settings, data):
    """(input settings, data label) of a benchmark: `data` dali keeps the input pipeline of
    the config, synthetic switches it to random tensors on the device."""
    if data not in DATA_SOURCES:
        raise ValueError(f"benchmark data must be one of {DATA_SOURCES}, not {data!r}")
    settings = dict(pipeline_settings)
    if data == "synthetic":
        settings["backend"] = "synthetic"
    return settings, "synthetic" if settings["backend"] == "synthetic" else "dali"


def check_dtype(dtype, contexts, what):
    """precision.require_dtype_supported with the benchmark or scoring job named first."""
    try:
        precision.require_dtype_supported(dtype, contexts)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def machine_and_versions():
    machine = devices.describe_machine()
    versions = machine.pop("versions")
    return machine, versions


def bench_train(
    result_path,
    *,
    rec,
    idx,
    classes_tsv,
    dtype,
    gpus,
    batch_per_device,
    bench_settings,
    network_settings,
    pipeline_settings,
    lock_dir,
    clock=time.perf_counter,
):
    """Training throughput of one (dtype, gpus, batch per device) point into result_path.

    bench_settings: the config's benchmark.train (data, iterations, epochs, warmup_epochs,
    num_examples{dtype}); the loop runs the original recipe's settings (training.
    DEFAULT_SETTINGS) with an epoch of num_examples[dtype] images for the lr schedule, as
    the original's --num-examples. gpus 0 runs on the CPU.
    """
    what = f"training benchmark {dtype} n{gpus} b{batch_per_device}"
    iterations, epochs = bench_settings["iterations"], bench_settings["epochs"]
    warmup_epochs = bench_settings["warmup_epochs"]
    num_examples = bench_settings["num_examples"][dtype]
    settings = {
        **training.DEFAULT_SETTINGS,
        "gpus": gpus,
        "batch_per_device": batch_per_device,
        "dtype": dtype,
        "cpu_contexts": 1,
    }
    input_settings, data = benchmark_input(pipeline_settings, bench_settings["data"])
    classes = len(read_classes(classes_tsv))
    with devices.acquire_gpus(gpus, lock_dir):
        contexts = devices.contexts(gpus, 1)
        check_dtype(dtype, contexts, what)
        global_batch = batch_per_device * len(contexts)
        if num_examples < global_batch:
            raise ValueError(
                f"{what}: benchmark.train.num_examples.{dtype} ({num_examples}) is smaller "
                f"than one global batch ({global_batch})"
            )
        loop = training.TrainingLoop(contexts, classes, num_examples, settings, network_settings)
        batches = pipelines.train_batches(
            rec,
            idx,
            contexts,
            batch_per_device,
            input_settings,
            dtype,
            seed=settings["seed"],
            iterations=iterations,
            num_classes=classes,
        )
        log.info(
            "%s: %d epochs of %d iterations (%d warmup epochs), %s data, contexts %s",
            what,
            epochs,
            iterations,
            warmup_epochs,
            data,
            contexts,
        )
        progress = Progress(log, epochs, unit="epochs", interval=0)

        def log_epoch(epoch, seconds):
            rate = iterations * global_batch / seconds
            phase = "warmup" if epoch <= warmup_epochs else "timed"
            progress.update(1, **{"last epoch": f"{rate:.1f} img/s ({phase})"})

        epoch_seconds = time_training_epochs(loop.step, batches, epochs, clock, log_epoch)
    epoch_rates, images_per_s = epoch_throughput(
        epoch_seconds, iterations * global_batch, warmup_epochs
    )
    timed_seconds = sum(epoch_seconds[warmup_epochs:])
    timed_iterations = iterations * (epochs - warmup_epochs)
    machine, versions = machine_and_versions()
    result = {
        "kind": "train",
        "dtype": dtype,
        "gpus": gpus,
        "devices": [str(ctx) for ctx in contexts],
        "batch_per_device": batch_per_device,
        "global_batch": global_batch,
        "data": data,
        "input_backend": input_settings["backend"],
        "image_size": input_settings["image_size"],
        "iterations": iterations,
        "epochs": epochs,
        "warmup_epochs": warmup_epochs,
        "num_examples": num_examples,
        "epoch_seconds": epoch_seconds,
        "epoch_images_per_s": epoch_rates,
        "images_per_s": images_per_s,
        "latency_ms": {"mean": 1000 * timed_seconds / timed_iterations},
        "network": network_settings,
        "machine": machine,
        "versions": versions,
    }
    made_with = {
        "dtype": dtype,
        "gpus": gpus,
        "batch_per_device": batch_per_device,
        "bench": bench_settings,
        "network": network_settings,
        "pipeline": pipeline_settings,
    }
    result = results.write(result_path, results.BENCH_TRAIN, result, made_with)
    log.info("%s: %.1f images/s after %d warmup epochs", what, images_per_s, warmup_epochs)
    return result


def bench_infer(
    result_path,
    *,
    rec,
    idx,
    classes_tsv,
    dtype,
    batch_size,
    bench_settings,
    network_settings,
    pipeline_settings,
    lock_dir,
    clock=time.perf_counter,
):
    """Inference throughput and per-batch latency of one (dtype, batch size) point on one
    device into result_path.

    bench_settings: the config's benchmark.infer (data, iterations, warmup_iterations,
    gpus 1 or 0 for the CPU). Data comes from rec/idx through the validation pipeline
    (epoch after epoch while needed) or, with data synthetic, from random tensors.
    """
    gpus = bench_settings["gpus"]
    what = f"inference benchmark {dtype} b{batch_size}"
    iterations = bench_settings["iterations"]
    warmup_iterations = bench_settings["warmup_iterations"]
    input_settings, data = benchmark_input(pipeline_settings, bench_settings["data"])
    classes = len(read_classes(classes_tsv))
    with devices.acquire_gpus(gpus, lock_dir):
        contexts = devices.contexts(gpus, 1)
        check_dtype(dtype, contexts, what)
        net = network.build(network_settings, classes, contexts, dtype)
        batches = pipelines.val_batches(
            rec,
            idx,
            contexts,
            batch_size,
            input_settings,
            dtype,
            iterations=iterations,
            num_classes=classes,
        )
        log.info(
            "%s: %d warmup and %d timed iterations, %s data, context %s",
            what,
            warmup_iterations,
            iterations,
            data,
            contexts[0],
        )
        for _ in range(warmup_iterations):
            # A new iterator continues the stream: one batch each.
            net(next(iter(batches))[0].data).wait_to_read()
        seconds, total_seconds = time_forward(net, batches, clock)
    images_per_s = iterations * batch_size / total_seconds
    machine, versions = machine_and_versions()
    result = {
        "kind": "infer",
        "dtype": dtype,
        "gpus": gpus,
        "device": str(contexts[0]),
        "batch_size": batch_size,
        "data": data,
        "input_backend": input_settings["backend"],
        "image_size": input_settings["image_size"],
        "weights": INFERENCE_WEIGHTS,
        "iterations": iterations,
        "warmup_iterations": warmup_iterations,
        "timed_seconds": total_seconds,
        "images_per_s": images_per_s,
        "latency_ms": latency_summary(seconds),
        "network": network_settings,
        "machine": machine,
        "versions": versions,
    }
    made_with = {
        "dtype": dtype,
        "batch_size": batch_size,
        "bench": bench_settings,
        "network": network_settings,
        "pipeline": pipeline_settings,
    }
    result = results.write(result_path, results.BENCH_INFER, result, made_with)
    log.info(
        "%s: %.1f images/s, latency mean %.2f ms, p99 %.2f ms, %s timed",
        what,
        images_per_s,
        result["latency_ms"]["mean"],
        result["latency_ms"]["p99"],
        format_duration(total_seconds),
    )
    return result


def model_name(network_settings):
    return f"resnet{network_settings['depth']}_v{network_settings['version']}"


def point_metrics(point):
    """One point's metrics under the original benchmark.py names (images/s, seconds)."""
    if point["kind"] == "train":
        return {"train.total_ips": point["images_per_s"]}
    latency = point["latency_ms"]
    metrics = {"val.total_ips": point["images_per_s"], "val.latency_avg": latency["mean"] / 1000}
    for p in results.LATENCY_PERCENTILES:
        metrics[f"val.latency_{p}"] = latency[f"p{p}"] / 1000
    metrics["val.latency_100"] = latency["max"] / 1000
    return metrics


def benchmark_report(points, kind):
    """{dtype: the original benchmark.py report} of benchmark points of one kind.

    The original ran once per precision and wrote {"model", "ngpus", "bs", "metric_keys",
    "metrics": {ngpus: {bs: {metric: value}}}} (keys of metrics as strings, bs per GPU);
    here each dtype's entry is exactly that, so a tool reading the original's report reads
    report[dtype]. Each point was measured once, so its value is its mean after warmup.
    """
    by_dtype = {}
    for point in points:
        if point["kind"] != kind:
            raise ValueError(f"a {point['kind']} benchmark point among the {kind} points")
        by_dtype.setdefault(point["dtype"], []).append(point)
    reports = {}
    for dtype, group in sorted(by_dtype.items()):
        batch_key = "batch_per_device" if kind == "train" else "batch_size"
        metrics = {}
        for point in sorted(group, key=lambda p: (p["gpus"], p[batch_key])):
            per_gpus = metrics.setdefault(str(point["gpus"]), {})
            if str(point[batch_key]) in per_gpus:
                raise ValueError(
                    f"two {kind} benchmark points for {dtype}, {point['gpus']} GPUs, batch "
                    f"{point[batch_key]}"
                )
            per_gpus[str(point[batch_key])] = point_metrics(point)
        models = sorted({model_name(point["network"]) for point in group})
        reports[dtype] = {
            "model": ",".join(models),
            "ngpus": sorted({point["gpus"] for point in group}),
            "bs": sorted({point[batch_key] for point in group}),
            "metric_keys": list(TRAIN_METRIC_KEYS if kind == "train" else INFER_METRIC_KEYS),
            "metrics": metrics,
        }
    return reports


def summarize(train_files, infer_files, train_path, infer_path):
    """The original benchmark.py report of the training and of the inference points, one
    file per kind with one entry per dtype (benchmark_report)."""
    for files, kind, path in (
        (train_files, "train", train_path),
        (infer_files, "infer", infer_path),
    ):
        points = [results.read(file, results.BENCH_POINTS[kind]) for file in files]
        report = benchmark_report(points, kind)
        results.write_bench_summary(path, report)
        log.info("%s: %d %s benchmark points of %s", path, len(files), kind, sorted(report))
