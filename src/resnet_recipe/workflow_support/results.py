"""Result files between stages, as contracts: the fields each one carries, how it is
written and how it is read back.

    write(path, RUN_REPORT, report, settings)
                                           check the fields, add the provenance, then
                                           write atomically
    read(path, SCORE)                      the JSON, checked; one error names the file and
                                           every missing field
    write_metrics(path, history)           metrics.jsonl: one JSON line per epoch
    read_metrics(path)                     its lines, each checked

Field names with a dot are nested: `network.depth` is result["network"]["depth"]. A
contract lists what the readers (scoring, the benchmark summary, the report) rely on; the
writers put more in each file (settings, machine, versions) for whoever reads it later.
Every result file written here also carries a `provenance` section (provenance.gather:
code, versions, MXNet build, machine, settings digest), added in this one place.
This module imports neither MXNet nor pandas: the report reads results through it (the
provenance section imports MXNet only while a result is written).
"""

import json
from dataclasses import dataclass

from resnet_recipe.files.atomic_files import atomic_open, write_json
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support import provenance
from resnet_recipe.workflow_support.machine_load import MACHINE_LOAD_KEYS
from resnet_recipe.workflow_support.settings import DTYPES

# Latency summary keys of a result's latency_ms (milliseconds): the mean, percentiles
# p50..p99 of the per-batch latencies, and the slowest batch.
LATENCY_PERCENTILES = (50, 90, 95, 99)
LATENCY_KEYS = ("mean", *(f"p{p}" for p in LATENCY_PERCENTILES), "max")
# Result fields that are fractions in [0, 1].
FRACTIONS = ("top1", "top5", "val_top1", "val_top5", "same_prediction_fraction")


@dataclass(frozen=True)
class Contract:
    """One result file: what it is called in errors, the fields it must carry and, for
    benchmark points, the value of its `kind` field."""

    description: str
    fields: tuple
    kind: str | None = None


NETWORK_FIELDS = ("network.depth", "network.version")
RUN_REPORT = Contract(
    "training run report",
    ("run", "gpus", "dtype", "batch_per_device", "global_batch", "epochs", "classes")
    + ("val_top1", "val_top5", "train_seconds", "images_per_s")
    + (*NETWORK_FIELDS, "pipeline.image_size"),
)
RUN_METRICS = Contract(
    "training metrics line",
    ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "images_per_s"),
)
SCORE = Contract(
    "score result",
    ("run", "dtype", "top1", "top5", "loss", "images_per_s", "latency_ms.mean"),
)
# A benchmark point's images_per_s is measured as the original benchmark.py did (see
# throughput.py); an inference point's latency_ms and latency_images_per_s come from a
# separate pass that waits for every batch; a training point's val_images_per_s is the
# original's val.total_ips of the validation pass after every epoch, and its
# wall_images_per_s the images of its epochs over their wall time. machine_load: what else
# used the machine's CPUs while the point ran (workflow_support/machine_load.py).
BENCH_FIELDS = (*NETWORK_FIELDS, "layout", "image_size", "input_backend", "images_per_s", "machine")
BENCH_FIELDS += tuple(f"machine_load.{key}" for key in MACHINE_LOAD_KEYS)
BENCH_TRAIN = Contract(
    "training benchmark point",
    ("kind", "dtype", "gpus", "batch_per_device", "global_batch")
    + (*BENCH_FIELDS, "val_images_per_s", "wall_images_per_s"),
    kind="train",
)
BENCH_INFER = Contract(
    "inference benchmark point",
    ("kind", "dtype", "gpus", "batch_size")
    + (*BENCH_FIELDS, "epoch_images_per_s", "latency_images_per_s")
    + tuple(f"latency_ms.{key}" for key in LATENCY_KEYS),
    kind="infer",
)
BENCH_POINTS = {"train": BENCH_TRAIN, "infer": BENCH_INFER}
# An inference point of another engine than MXNet (onnxruntime): the fields of an MXNet
# point and the engine's name. MXNet points carry no engine field.
BENCH_INFER_ENGINE = Contract(
    "inference benchmark point of another engine",
    (*BENCH_INFER.fields, "engine"),
    kind="infer",
)
# A run's model.onnx scored by onnxruntime beside its MXNet checkpoint on the same batches.
ONNX_PARITY = Contract(
    "ONNX parity result",
    ("run", "images", "same_prediction_fraction", "max_abs_logit_difference")
    + tuple(
        f"{engine}.{metric}" for engine in ("onnxruntime", "mxnet") for metric in ("top1", "top5")
    ),
)
# The benchmark summary (the original benchmark.py report): one entry per dtype.
BENCH_SUMMARY_ENTRY = Contract(
    "benchmark summary entry", ("model", "ngpus", "bs", "metric_keys", "metrics")
)


def has_field(result, name):
    """Whether `result` has the field `name` (dots for nested fields: network.depth)."""
    for key in name.split("."):
        if not isinstance(result, dict) or key not in result:
            return False
        result = result[key]
    return True


def check(result, contract, where):
    """`result` if it keeps `contract`; else one ValueError that starts with `where` (the
    file) and names every missing field, or the value that is wrong."""
    if not isinstance(result, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(result).__name__}")
    if contract.kind is not None and result.get("kind") != contract.kind:
        raise UserError(
            f"{where}: field kind is {result.get('kind')!r}, expected {contract.kind!r} "
            f"(a {contract.description})"
        )
    missing = [name for name in contract.fields if not has_field(result, name)]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)} ({contract.description})")
    if "dtype" in result and result["dtype"] not in DTYPES:
        raise UserError(f"{where}: dtype {result['dtype']!r} is not one of {', '.join(DTYPES)}")
    for name in FRACTIONS:
        value = result.get(name, 0.0)
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise UserError(f"{where}: {name} = {value!r} is not a fraction in [0, 1]")
    return result


# The key of the provenance section in every result file (in each dtype entry of a
# benchmark summary), and the fields of a summary entry that are its settings: what it
# covers (it has no settings of its own), the metric keys telling training from inference.
PROVENANCE = "provenance"
SUMMARY_SETTINGS = ("model", "ngpus", "bs", "metric_keys")


def write(path, contract, result, settings):
    """Write `result` as JSON to `path` (atomically) once it keeps `contract`, with its
    provenance; `settings` are the settings the stage computed it with (their digest)."""
    check(result, contract, f"{path} (being written)")
    result = {**result, PROVENANCE: provenance.gather(settings)}
    write_json(path, result)
    return result


def load_json(path, description):
    """The JSON of a result file; a missing file or broken JSON is an error naming it."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: {description} not found") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def read(path, contract):
    """The JSON of `path`, checked against `contract`."""
    return check(load_json(path, contract.description), contract, path)


def write_metrics(path, history):
    """metrics.jsonl: one line per epoch, each keeping RUN_METRICS."""
    for number, metrics in enumerate(history, start=1):
        check(metrics, RUN_METRICS, f"{path}:{number} (being written)")
    with atomic_open(path) as handle:
        for metrics in history:
            handle.write(json.dumps(metrics, sort_keys=True) + "\n")


def read_metrics(path):
    """The per-epoch lines of a metrics.jsonl, each checked (blank lines skipped)."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: training metrics not found") from None
    epochs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            metrics = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not valid JSON ({error})") from None
        epochs.append(check(metrics, RUN_METRICS, f"{path}:{number}"))
    return epochs


def write_bench_summary(path, summary):
    """The benchmark summary: {dtype: the original benchmark.py report}, each entry with
    its provenance (a tool that reads the original's report ignores the extra key)."""
    for dtype, entry in summary.items():
        check(entry, BENCH_SUMMARY_ENTRY, f"{path} [{dtype}] (being written)")
    made_by = provenance.origin()
    with_provenance = {}
    for dtype, entry in summary.items():
        covered = {"dtype": dtype, **{key: entry[key] for key in SUMMARY_SETTINGS}}
        digest = provenance.settings_digest(covered)
        with_provenance[dtype] = {**entry, PROVENANCE: {**made_by, "settings_digest": digest}}
    write_json(path, with_provenance)


def read_bench_summary(path):
    summary = load_json(path, "benchmark summary")
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(summary).__name__}")
    for dtype, entry in summary.items():
        check(entry, BENCH_SUMMARY_ENTRY, f"{path} [{dtype}]")
    return summary
