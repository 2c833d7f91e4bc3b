"""Throughput benchmarks, one point per call, and their summary in the original benchmark.py
report shape.

    bench_train(path, dtype=, gpus=, batch_per_device=, ...)  -> one training point's JSON
    bench_infer(path, dtype=, batch_size=, ...)                -> one inference point's JSON
    time_inference(forward, batches_of, bench, batch_size)     -> its numbers, of any engine
    summarize(train_files, infer_files, train_path, infer_path) -> benchmark.py-shaped JSON

Nothing is computed or logged for metrics inside a timed loop, and the first iterations,
which build the graph and let cuDNN pick its algorithms, are never timed.

Training: E epochs of I iterations of the training loop's own step (TrainingLoop.step:
forward, backward, update; the config's training.defaults for all the point does not set),
data loading included, the warmup epochs left out and the rest averaged as the original
does: the harmonic mean. Each epoch gives two measures (timing.time_epoch), both recorded:
- images_per_s, the original's train.total_ips: the global batch over the mean interval
  between unwaited batch ends, each epoch's first batch left out (fit.py L379-413, its
  Gatherer, benchmark.py L70-71), measured as inference throughput below;
- wall_images_per_s: an epoch's images over its wall time, first batch included, ended by
  mx.nd.waitall(): what a user's wall clock sees.
latency_ms carries the mean only (the timed wall seconds over the timed iterations): the
loop never waits for the device between iterations, so the host cannot see when one
iteration ends. After each training epoch, as the original's Module.fit did, a validation
pass of at most I iterations on the same devices gives val.total_ips, measured like
inference throughput below.

Inference, two measurements on one device with a freshly initialised, hybridized network
(throughput needs no trained weights):
- throughput (the original's --only-inference val.total_ips): E epochs of I batches
  through the validation pipeline; an epoch's time per batch is the mean interval between
  consecutive batch ends with its first batch left out, none of the counted batches waited
  for, the interval opened by a wait for the left-out first batch and closed by a wait for
  the device (timing.time_batch_ends); images/s is the batch over it, averaged over the
  epochs after the warmup ones by the harmonic mean.
- latency: then latency_iterations batches, each timed from asking the pipeline for it to
  its output being ready (wait_to_read): the percentiles, and the batch over their mean,
  which the original's later versions report as val.ips.
"""

import logging
import time
from dataclasses import dataclass

from resnet_recipe.benchmarking import point_logs
from resnet_recipe.data import pipelines
from resnet_recipe.data.listing import read_classes
from resnet_recipe.files import dllogger_log
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network, precision
from resnet_recipe.scoring import timing
from resnet_recipe.training import loop as training
from resnet_recipe.workflow_support import devices, machine_load, results
from resnet_recipe.workflow_support.progress import Progress
from resnet_recipe.workflow_support.settings import InputPipeline, Network

log = logging.getLogger(__name__)

DATA_SOURCES = ("dali", "synthetic")
# Metric names of the original benchmark.py: train.total_ips and val.total_ips (images/s,
# data and compute, batches not waited for; benchmark.py L48-51); val.ips (the batch over
# the mean waited latency) and the latency keys (in seconds, latency_100 the slowest batch)
# as its later versions name them. train.wall_ips is this workflow's own: the epochs' wall
# time (WALL_METHOD).
TRAIN_METRIC_KEYS = ("train.total_ips", "val.total_ips", "train.wall_ips")
INFER_METRIC_KEYS = (
    "val.total_ips",
    "val.ips",
    "val.latency_avg",
    *(f"val.latency_{p}" for p in results.LATENCY_PERCENTILES),
    "val.latency_100",
)
INFERENCE_WEIGHTS = "random initialisation: throughput does not depend on trained weights"
THROUGHPUT_METHOD = (
    "harmonic mean over the epochs after the warmup ones of batch / mean interval between "
    "consecutive batch ends, first batch of each epoch left out, batches not waited for; "
    "the interval opened by a wait for the left-out first batch and closed by a wait for "
    "the device (the original benchmark.py L70-71, fit.py L379-413)"
)
WALL_METHOD = (
    "harmonic mean over the epochs after the warmup ones of an epoch's images over its wall "
    "time, first batch included, ended by a wait for the device: what a wall clock sees, "
    "not the original's measure"
)
LATENCY_METHOD = "each batch timed from asking the pipeline for it to its output being ready"
# How each summary metric was measured: the summary's labels (its metric_methods).
METRIC_METHODS = {
    "train.total_ips": f"training images/s: {THROUGHPUT_METHOD}",
    "val.total_ips": f"validation or inference images/s: {THROUGHPUT_METHOD}",
    "train.wall_ips": f"training images/s: {WALL_METHOD}",
    "val.ips": f"batch over the mean latency, {LATENCY_METHOD}",
    **{
        key: f"seconds per batch, {LATENCY_METHOD}"
        for key in INFER_METRIC_KEYS
        if key.startswith("val.latency_")
    },
}


@dataclass(frozen=True)
class BenchSetup:
    """What the benchmark points of one config share: the packed split they read (rec,
    idx), its classes.tsv, the network (settings.Network), the input pipeline
    (settings.InputPipeline), the folder of the GPU lock files and, for training points,
    the validation split (val_rec, val_idx) of the validation pass after every epoch."""

    rec: str
    idx: str
    classes_tsv: str
    network: Network
    pipeline: InputPipeline
    lock_dir: str
    val_rec: str | None = None
    val_idx: str | None = None

    @classmethod
    def of_rule(cls, inputs, params):
        """The setup of a benchmark rule: its input files rec, idx, classes (and val_rec,
        val_idx of a training point) and its params network, pipeline and lock_dir."""
        return cls(
            rec=inputs.rec,
            idx=inputs.idx,
            classes_tsv=inputs.classes,
            network=Network.from_config(params.network, "network"),
            pipeline=InputPipeline.from_config(params.pipeline, "input"),
            lock_dir=params.lock_dir,
            val_rec=getattr(inputs, "val_rec", None),
            val_idx=getattr(inputs, "val_idx", None),
        )

    def input(self, data):
        """(input settings, data label) of a benchmark: `data` dali keeps the config's
        input pipeline, synthetic switches it to random tensors on the device."""
        if data not in DATA_SOURCES:
            raise UserError(f"benchmark data must be one of {DATA_SOURCES}, not {data!r}")
        if data == "synthetic":
            return self.pipeline.replace(backend="synthetic"), "synthetic"
        return self.pipeline, "synthetic" if self.pipeline.backend == "synthetic" else "dali"

    def made_with(self, input_settings):
        """The setup's settings a benchmark point's provenance digests."""
        return {"network": self.network.to_config(), "pipeline": input_settings.to_config()}

    def val_stream(self, contexts, stream):
        """batches_of(iterations): validation batches of the split on `contexts`, `stream`
        the other arguments of pipelines.val_batches."""
        return lambda iterations: pipelines.val_batches(
            self.rec, self.idx, contexts, iterations=iterations, **stream
        )

    def recorded(self, input_settings, data, dtype):
        """What every benchmark point records of its setup beside its own numbers."""
        machine = devices.describe_machine()
        return {
            "data": data,
            "layout": self.network.layout_for(dtype),
            "input_backend": input_settings.backend,
            "image_size": input_settings.image_size,
            "network": self.network.to_config(),
            "versions": machine.pop("versions"),
            "machine": machine,
        }


def bench_train(
    result_path,
    setup,
    *,
    dtype,
    gpus,
    batch_per_device,
    bench_settings,
    run_settings,
    clock=time.perf_counter,
):
    """Training throughput of one (dtype, gpus, batch per device) point into result_path.

    setup: a BenchSetup of the training split; bench_settings: settings.BenchTrain;
    run_settings: the settings.TrainingRun the loop runs (the config's training.defaults)
    with the point's gpus, batch and dtype on one context per device (one node), its epoch
    being num_examples[dtype] images (the original's --num-examples). gpus 0: the CPU.
    """
    what = f"training benchmark {dtype} n{gpus} b{batch_per_device}"
    bench = bench_settings
    run = run_settings.replace(
        gpus=gpus, batch_per_device=batch_per_device, dtype=dtype, cpu_contexts=1, nodes=1
    )
    input_settings, data = setup.input(bench.data)
    with devices.acquire_gpus(gpus, setup.lock_dir):
        contexts = devices.contexts(gpus, 1)
        precision.require_dtype_supported(dtype, contexts, what)
        global_batch = batch_per_device * len(contexts)
        num_examples = _notional_epoch(what, bench, dtype, global_batch)
        log.info(
            "%s: %d epochs of %d iterations (%d warmup epochs), %s data, contexts %s",
            *(what, bench.epochs, bench.iterations, bench.warmup_epochs, data, contexts),
        )
        with machine_load.LoadWatch() as watch:
            epochs, val_seconds = _time_training(setup, input_settings, run, bench, contexts, clock)
    point = {"dtype": dtype, "gpus": gpus, "nodes": 1, "batch_per_device": batch_per_device}
    result = {
        "kind": "train",
        **point,
        "devices": [str(ctx) for ctx in contexts],
        "global_batch": global_batch,
        "num_examples": num_examples,
        "settings": run.to_config(),  # what the loop ran: the point on training.defaults
        **_training_rates(bench, global_batch, epochs),
        **_validation_rates(bench, global_batch, val_seconds),
        "machine_load": watch.signals,
        **setup.recorded(input_settings, data, dtype),
    }
    made_with = {
        "point": point,
        "bench": bench.to_config(),
        "settings": run.to_config(),
        **setup.made_with(input_settings),
    }
    result = results.write(result_path, results.BENCH_TRAIN, result, made_with)
    point_logs.write_beside(result_path, result)
    log.info(
        "%s: %.1f images/s training (unwaited batch ends), %.1f (epoch wall time), %.1f "
        "validation, after %d warmup epochs",
        *(what, result["images_per_s"], result["wall_images_per_s"]),
        *(result["val_images_per_s"], bench.warmup_epochs),
    )
    warn_if_disturbed(what, result)
    return result


def _notional_epoch(what, bench, dtype, global_batch):
    """Images of the epoch the lr schedule sees (the original's --num-examples)."""
    num_examples = bench.num_examples[dtype]
    if num_examples < global_batch:
        raise UserError(
            f"{what}: benchmark.train.num_examples.{dtype} ({num_examples}) is smaller "
            f"than one global batch ({global_batch})"
        )
    return num_examples


def _time_training(setup, input_settings, run, bench, contexts, clock):
    """([(wall seconds, seconds per batch after the first)] of each benchmark epoch of the
    training loop's step on `contexts`, seconds per batch of the validation pass after each
    epoch)."""
    if setup.val_rec is None or setup.val_idx is None:
        raise ValueError("a training benchmark needs the validation split for val.total_ips")
    classes = len(read_classes(setup.classes_tsv))
    num_examples = bench.num_examples[run.dtype]
    loop = training.TrainingLoop(contexts, classes, num_examples, run, setup.network)
    stream = dict(
        batch_per_device=run.batch_per_device,
        settings=input_settings,
        dtype=run.dtype,
        layout=setup.network.layout_for(run.dtype),
        iterations=bench.iterations,
        num_classes=classes,
    )
    batches = pipelines.train_batches(setup.rec, setup.idx, contexts, seed=run.seed, **stream)
    # The original capped validation at the benchmark's iterations too (fit.py L360-361
    # wrap both iterators in BenchmarkingDataIter, whose next(), benchmarking.py L29-47,
    # stops there); an epoch shorter than that is read again from its start.
    val_batches = pipelines.val_batches(setup.val_rec, setup.val_idx, contexts, **stream)
    global_batch = run.batch_per_device * len(contexts)
    progress = Progress(log, bench.epochs, unit="epochs", interval=0)
    val_seconds = []

    def validate(epoch, seconds):
        val_seconds.extend(timing.time_batch_ends(run_forward(loop.net), val_batches, 1, clock))
        rate = bench.iterations * global_batch / seconds
        phase = "warmup" if epoch <= bench.warmup_epochs else "timed"
        progress.update(1, **{"last epoch": f"{rate:.1f} img/s over its wall time ({phase})"})

    epochs = timing.time_training_epochs(loop.step, batches, bench.epochs, clock, validate)
    return epochs, val_seconds


def run_forward(net):
    """A timing.time_batch_ends `run`: the forward of every device's batch, not waited for."""

    def run(device_batches):
        for batch in device_batches:
            net(batch.data)

    return run


def _training_rates(bench, global_batch, epochs):
    """A training point's numbers from its epochs' (wall seconds, seconds per batch): both
    measures per epoch and their harmonic means after the warmup epochs, and the mean wall
    time of a timed iteration."""
    epoch_seconds = [wall for wall, _ in epochs]
    batch_seconds = [per_batch for _, per_batch in epochs]
    epoch_rates, images_per_s = timing.epoch_throughput(
        batch_seconds, global_batch, bench.warmup_epochs
    )
    wall_rates, wall_images_per_s = timing.epoch_throughput(
        epoch_seconds, bench.iterations * global_batch, bench.warmup_epochs
    )
    timed_seconds = sum(epoch_seconds[bench.warmup_epochs :])
    timed_iterations = bench.iterations * (bench.epochs - bench.warmup_epochs)
    return {
        "iterations": bench.iterations,
        "epochs": bench.epochs,
        "warmup_epochs": bench.warmup_epochs,
        # The original's measure, train.total_ips.
        "throughput_method": THROUGHPUT_METHOD,
        "epoch_batch_seconds": batch_seconds,
        "epoch_images_per_s": epoch_rates,
        "images_per_s": images_per_s,
        # The wall clock's.
        "wall_method": WALL_METHOD,
        "epoch_seconds": epoch_seconds,
        "wall_epoch_images_per_s": wall_rates,
        "wall_images_per_s": wall_images_per_s,
        "latency_ms": {"mean": 1000 * timed_seconds / timed_iterations},
    }


def _validation_rates(bench, global_batch, val_seconds):
    """A training point's validation numbers: images/s of each epoch's validation pass
    (global batch over its time per batch) and their harmonic mean after the warmup."""
    rates, images_per_s = timing.epoch_throughput(val_seconds, global_batch, bench.warmup_epochs)
    return {"val_epoch_images_per_s": rates, "val_images_per_s": images_per_s}


def bench_infer(result_path, setup, *, dtype, batch_size, bench_settings, clock=time.perf_counter):
    """Inference throughput and per-batch latency of one (dtype, batch size) point on one
    device into result_path.

    setup: a BenchSetup of the validation split; bench_settings: settings.BenchInfer
    (data, iterations, epochs, warmup_epochs, latency_iterations, gpus 1 or 0 for the CPU).
    Data comes through the validation pipeline (epoch after epoch while needed) or, with
    data synthetic, from random tensors. The module docstring says what is measured.
    """
    bench = bench_settings
    what = f"inference benchmark {dtype} b{batch_size}"
    input_settings, data = setup.input(bench.data)
    classes = len(read_classes(setup.classes_tsv))
    with devices.acquire_gpus(bench.gpus, setup.lock_dir):
        contexts = devices.contexts(bench.gpus, 1)
        precision.require_dtype_supported(dtype, contexts, what)
        net = network.build(setup.network, classes, contexts, dtype)
        stream = dict(
            batch_per_device=batch_size,
            settings=input_settings,
            dtype=dtype,
            layout=setup.network.layout_for(dtype),
            num_classes=classes,
        )
        log.info(
            "%s: %d epochs of %d unwaited batches (%d warmup epochs), then %d waited batches, "
            "%s data, context %s",
            *(what, bench.epochs, bench.iterations, bench.warmup_epochs),
            *(bench.latency_iterations, input_settings.backend, contexts[0]),
        )
        numbers = time_inference(net, setup.val_stream(contexts, stream), bench, batch_size, clock)
    result = {
        "kind": "infer",
        "dtype": dtype,
        "gpus": bench.gpus,
        "device": str(contexts[0]),
        "batch_size": batch_size,
        "weights": INFERENCE_WEIGHTS,
        **numbers,
        **setup.recorded(input_settings, data, dtype),
    }
    made_with = {
        "point": {"dtype": dtype, "batch_size": batch_size},
        "bench": bench.to_config(),
        **setup.made_with(input_settings),
    }
    result = results.write(result_path, results.BENCH_INFER, result, made_with)
    point_logs.write_beside(result_path, result)
    log_inference_point(what, result)
    return result


def time_inference(forward, batches_of, bench, batch_size, clock=time.perf_counter):
    """An inference point's numbers (the module docstring says how they are measured) of
    `forward` (an NDArray batch in, its output out) over the batches that
    batches_of(iterations) gives: bench.epochs unwaited passes of bench.iterations batches,
    then one waited pass of bench.latency_iterations, under one machine_load.LoadWatch."""
    with machine_load.LoadWatch() as watch:
        batch_seconds = timing.time_batch_ends(
            run_forward(forward), batches_of(bench.iterations), bench.epochs, clock
        )
        latencies, _ = timing.time_forward(forward, batches_of(bench.latency_iterations), clock)
    epoch_rates, images_per_s = timing.epoch_throughput(
        batch_seconds, batch_size, bench.warmup_epochs, "benchmark.infer"
    )
    latency = timing.latency_summary(latencies)
    return {
        "iterations": bench.iterations,
        "epochs": bench.epochs,
        "warmup_epochs": bench.warmup_epochs,
        # Throughput: batches not waited for, first batch of each epoch left out.
        "throughput_method": THROUGHPUT_METHOD,
        "epoch_batch_seconds": batch_seconds,
        "epoch_images_per_s": epoch_rates,
        "images_per_s": images_per_s,
        # Latency: a separate pass waiting for every batch.
        "latency_method": LATENCY_METHOD,
        "latency_iterations": bench.latency_iterations,
        "latency_ms": latency,
        # The later versions' val.ips: the batch over the mean waited latency (810bcf3
        # fit.py L296-299).
        "latency_images_per_s": batch_size / (latency["mean"] / 1000),
        "machine_load": watch.signals,
    }


def log_inference_point(what, result):
    latency = result["latency_ms"]
    log.info(
        "%s: %.1f images/s (unwaited), %.1f images/s waiting for each batch, latency mean "
        "%.2f ms, p99 %.2f ms",
        *(what, result["images_per_s"], result["latency_images_per_s"]),
        *(latency["mean"], latency["p99"]),
    )
    warn_if_disturbed(what, result)


def warn_if_disturbed(what, result):
    """A warning in the point's log when other work shared the machine while it ran."""
    reason = machine_load.disturbance(result["machine_load"])
    if reason is not None:
        log.warning("%s: disturbed: %s", what, reason)


def model_name(network_settings):
    """The model name of a point's network as the original's per-run report wrote it
    (resnet50: 'resnet{}'.format(args.num_layers), fit.py L358 at a8e1d1cd); its
    benchmark.py left the summary's model empty (L45)."""
    return f"resnet{network_settings['depth']}"


def point_metrics(point):
    """One point's metrics under the original benchmark.py names (images/s, seconds)."""
    if point["kind"] == "train":
        return {
            "train.total_ips": point["images_per_s"],
            "val.total_ips": point["val_images_per_s"],
            "train.wall_ips": point["wall_images_per_s"],
        }
    return {
        "val.total_ips": point["images_per_s"],
        "val.ips": point["latency_images_per_s"],
        **dllogger_log.validation_latencies(point["latency_ms"]),
    }


def benchmark_report(points, kind):
    """{dtype: the original benchmark.py report} of benchmark points of one kind.

    The original ran once per precision and wrote {"model", "ngpus", "bs", "metric_keys",
    "metrics": {ngpus: {bs: {metric: value}}}} (keys of metrics as strings, bs per GPU);
    here each dtype's entry is exactly that, so a tool reading the original's report reads
    report[dtype]. Each point was measured once, so its value is its mean after warmup.
    Beside the original's keys, metric_methods says how each metric was measured.
    """
    by_dtype = {}
    for point in points:
        if point["kind"] != kind:
            raise UserError(f"a {point['kind']} benchmark point among the {kind} points")
        by_dtype.setdefault(point["dtype"], []).append(point)
    reports = {}
    keys = TRAIN_METRIC_KEYS if kind == "train" else INFER_METRIC_KEYS
    for dtype, group in sorted(by_dtype.items()):
        batch_key = "batch_per_device" if kind == "train" else "batch_size"
        metrics = {}
        for point in sorted(group, key=lambda p: (p["gpus"], p[batch_key])):
            per_gpus = metrics.setdefault(str(point["gpus"]), {})
            if str(point[batch_key]) in per_gpus:
                raise UserError(
                    f"two {kind} benchmark points for {dtype}, "
                    f"{devices.gpus_phrase(point['gpus'])}, batch "
                    f"{point[batch_key]}"
                )
            per_gpus[str(point[batch_key])] = point_metrics(point)
        models = sorted({model_name(point["network"]) for point in group})
        reports[dtype] = {
            "model": ",".join(models),
            "ngpus": sorted({point["gpus"] for point in group}),
            "bs": sorted({point[batch_key] for point in group}),
            "metric_keys": list(keys),
            "metric_methods": {key: METRIC_METHODS[key] for key in keys},
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
