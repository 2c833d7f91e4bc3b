"""The aggregated report: accuracy, training-throughput and inference tables (CSV and
Markdown) and graphs (PNG) from the result files of training, scoring and benchmarks,
beside the published reference numbers of the original recipe on a DGX-1.

A measured point is compared with a reference point only when it is the same experiment:
ResNet-50 v1.5 at 224x224 on GPUs (for accuracy also 90 epochs on ImageNet's 1000 classes)
at the same GPU count, dtype and batch. The reference tables carry these settings as
columns and the joins match on them, so a CPU point or a demo at 32 px never gets a ratio.

Every section builds from whatever subset of results it is given and says in words what is
missing, so a matrix with one run, only benchmarks or no FP32 still gives a full report.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from resnet_recipe.atomic_files import atomic_open, atomic_path

log = logging.getLogger(__name__)

REFERENCE_HARDWARE = "NVIDIA DGX-1 (8x V100 16 GB), container mxnet-18.12-py3"
REFERENCE_INFERENCE_HARDWARE = "one V100 16 GB of an NVIDIA DGX-1, container mxnet-18.12-py3"
REFERENCE_LABEL = "reference, DGX-1 V100, 224 px"
DTYPES = ("float16", "float32")
LATENCY_PERCENTILES = ("mean", "p50", "p90", "p95", "p99")

# The experiment behind the reference numbers (beyond GPU count, dtype and batch), and in
# words. Accuracy rows must also match the training task.
REFERENCE_SETUP = {"network": "ResNet-50 v1.5", "image_size": 224}
REFERENCE_TASK = {"classes": 1000, "epochs": 90}
REFERENCE_SETUP_TEXT = "ResNet-50 v1.5 at 224x224 px"
REFERENCE_TASK_TEXT = "90 epochs on ImageNet's 1000 classes"
# How report.md names measured rows whose setting differs from the reference's.
DIFFERENCE_WORDS = {
    "network": "{value} {what}",
    "image_size": "{what} at {value} px",
    "classes": "{what} on {value} classes",
    "epochs": "{what} of {value} epochs",
}

# Fields each result file must carry for the report (see the file contracts); dotted names
# are nested fields.
RUN_REPORT_FIELDS = ("run", "gpus", "dtype", "epochs", "classes", "train_seconds")
RUN_REPORT_FIELDS += ("network.depth", "network.version", "pipeline.image_size")
METRICS_FIELDS = ("epoch", "train_loss", "train_top1", "val_top1")
SCORE_FIELDS = ("run", "dtype", "top1", "top5")
BENCH_FIELDS = {
    "train": ("dtype", "gpus", "batch_per_device", "global_batch"),
    "infer": ("dtype", "gpus", "batch_size"),
}
BENCH_COMMON_FIELDS = ("network.depth", "network.version", "image_size", "input_backend")
BENCH_COMMON_FIELDS += ("images_per_s", "machine")

# Reference table: (file name, columns it must have, the experiment it measured, added to
# it as constant columns: inference ran on one V100).
REFERENCES = {
    "reference_accuracy": (
        "accuracy.csv",
        ("gpus", "dtype", "top1", "training_time_h"),
        {**REFERENCE_SETUP, **REFERENCE_TASK},
    ),
    "reference_training": (
        "training_throughput.csv",
        ("gpus", "dtype", "batch_size", "img_per_s"),
        REFERENCE_SETUP,
    ),
    "reference_inference": (
        "inference_throughput.csv",
        ("dtype", "batch_size", "img_per_s"),
        {"gpus": 1, **REFERENCE_SETUP},
    ),
}
# The columns a measured row and a reference row must share to be compared.
ACCURACY_KEYS = ["gpus", "dtype", *REFERENCE_SETUP, *REFERENCE_TASK]
TRAINING_KEYS = ["gpus", "dtype", "batch_per_device", *REFERENCE_SETUP]
INFERENCE_KEYS = ["gpus", "dtype", "batch_size", *REFERENCE_SETUP]


@dataclass(frozen=True)
class ReportOutputs:
    """Where the report's files go; field names are the report rule's output names."""

    markdown: str
    accuracy_csv: str
    training_csv: str
    inference_csv: str
    training_loss_png: str
    training_top1_png: str
    validation_top1_png: str
    training_scaling_png: str
    inference_throughput_png: str
    inference_latency_png: str

    @classmethod
    def in_folder(cls, folder):
        names = {
            "markdown": "report.md",
            "accuracy_csv": "accuracy.csv",
            "training_csv": "training_throughput.csv",
            "inference_csv": "inference_throughput.csv",
        }
        return cls(
            **{
                field.name: os.path.join(folder, names.get(field.name, field.name[:-4] + ".png"))
                for field in fields(cls)
            }
        )


def reference_files(folder):
    """The three reference CSV paths in a folder, as keyword arguments of build_report."""
    return {key: os.path.join(folder, name) for key, (name, _, _) in REFERENCES.items()}


def build_report(
    run_dirs,
    score_files,
    bench_train_files,
    bench_infer_files,
    reference_accuracy,
    reference_training,
    reference_inference,
    outputs,
):
    """Read every given result file and the reference CSVs, write the tables, graphs and
    report.md to `outputs` (a ReportOutputs). Any of the result lists may be empty."""
    runs = [read_run(path) for path in run_dirs]
    _check_unique("training run", [(run["report"]["run"],) for run in runs], run_dirs)
    scores = [read_result(path, SCORE_FIELDS) for path in score_files]
    _check_unique("score", [(score["run"],) for score in scores], score_files)
    bench_train = read_bench(bench_train_files, "train")
    bench_infer = read_bench(bench_infer_files, "infer")
    reference = {
        "accuracy": read_reference(reference_accuracy, "reference_accuracy"),
        "training": read_reference(reference_training, "reference_training").rename(
            columns={"batch_size": "batch_per_device"}
        ),
        "inference": read_reference(reference_inference, "reference_inference"),
    }
    log.info(
        "report from %d runs, %d scores, %d training and %d inference benchmark points",
        len(runs),
        len(scores),
        len(bench_train),
        len(bench_infer),
    )

    accuracy = accuracy_table(runs, scores, reference["accuracy"])
    training = training_throughput_table(bench_train, reference["training"])
    inference = inference_table(bench_infer, reference["inference"])
    write_csv(outputs.accuracy_csv, accuracy)
    write_csv(outputs.training_csv, training)
    write_csv(outputs.inference_csv, inference)

    metrics = epoch_metrics(runs)
    graph_notes = {
        "training_loss_png": plot_epoch_curves(
            metrics,
            "train_loss",
            "training loss (cross-entropy with the run's label smoothing)",
            outputs.training_loss_png,
        ),
        "training_top1_png": plot_epoch_curves(
            metrics, "train_top1", "training top-1 (%)", outputs.training_top1_png
        ),
        "validation_top1_png": plot_epoch_curves(
            metrics, "val_top1", "validation top-1 (%)", outputs.validation_top1_png
        ),
        "training_scaling_png": plot_training_scaling(
            training, reference["training"], outputs.training_scaling_png
        ),
        "inference_throughput_png": plot_inference(
            inference, reference["inference"], "throughput", outputs.inference_throughput_png
        ),
        "inference_latency_png": plot_inference(
            inference, reference["inference"], "latency", outputs.inference_latency_png
        ),
    }
    machines = [result["machine"] for result in bench_train["result"]]
    machines += [result["machine"] for result in bench_infer["result"]]
    sections = report_sections(runs, scores, accuracy, training, inference, reference)
    markdown = report_markdown(sections, machines, graph_notes, outputs)
    with atomic_open(outputs.markdown) as handle:
        handle.write(markdown)
    log.info("wrote %s and the tables and graphs beside it", outputs.markdown)


# ---------------------------------------------------------------- reading results


def _has_field(result, name):
    """Whether a result has a field, named with dots when nested (network.depth)."""
    for key in name.split("."):
        if not isinstance(result, dict) or key not in result:
            return False
        result = result[key]
    return True


def read_result(path, required, kind=None):
    """One result JSON, checked for the fields the report uses."""
    try:
        with open(path) as handle:
            result = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"result file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(result).__name__}")
    if kind is not None and result.get("kind") != kind:
        raise ValueError(f"{path}: field kind is {result.get('kind')!r}, expected {kind!r}")
    missing = [name for name in required if not _has_field(result, name)]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    if "dtype" in result and result["dtype"] not in DTYPES:
        raise ValueError(f"{path}: dtype {result['dtype']!r} is not one of {', '.join(DTYPES)}")
    for name in ("top1", "top5"):
        value = result.get(name, 0.0)
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{path}: {name} = {value!r} is not a fraction in [0, 1]")
    return result


def network_name(network):
    """'ResNet-50 v1.5' from a result's network settings {depth, version}."""
    return f"ResNet-{network['depth']} v{network['version']}"


def read_run(run_dir):
    """A training run folder: its report.json, the per-epoch lines of metrics.jsonl and its
    setup (network name, image size)."""
    report = read_result(os.path.join(run_dir, "report.json"), RUN_REPORT_FIELDS)
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    epochs = []
    try:
        with open(metrics_path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"training metrics not found: {metrics_path}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            epoch = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{metrics_path}:{number}: not valid JSON ({error})") from None
        missing = [name for name in METRICS_FIELDS if name not in epoch]
        if missing:
            raise ValueError(f"{metrics_path}:{number}: missing field(s) {', '.join(missing)}")
        epochs.append(epoch)
    setup = {"network": network_name(report["network"])}
    setup["image_size"] = report["pipeline"]["image_size"]
    return {"report": report, "epochs": epochs, "setup": setup}


def read_bench(paths, kind):
    """Benchmark points of `kind` ("train" or "infer") as a table, one row per file: the
    contract's fields, the network name, the image size and the input pipeline ("input":
    dali-gpu, dali-cpu or synthetic); inference adds one latency column per percentile.
    The result column holds each whole JSON."""
    required = (*BENCH_FIELDS[kind], *BENCH_COMMON_FIELDS)
    if kind == "infer":
        required += tuple(f"latency_ms.{p}" for p in LATENCY_PERCENTILES)
    results = [read_result(path, required, kind=kind) for path in paths]
    rows = []
    for result in results:
        row = {name: result[name] for name in BENCH_FIELDS[kind]}
        row["input"] = result["input_backend"]
        row["network"] = network_name(result["network"])
        row["image_size"] = result["image_size"]
        row["images_per_s"] = result["images_per_s"]
        if kind == "infer":
            row.update({f"latency_{p}_ms": result["latency_ms"][p] for p in LATENCY_PERCENTILES})
        rows.append(row)
    columns = [*BENCH_FIELDS[kind], "input", *REFERENCE_SETUP, "images_per_s"]
    if kind == "infer":
        columns += [f"latency_{p}_ms" for p in LATENCY_PERCENTILES]
    key = [*BENCH_FIELDS[kind][:3], *REFERENCE_SETUP]
    what = "training" if kind == "train" else "inference"
    _check_unique(f"{what} benchmark point", [tuple(row[k] for k in key) for row in rows], paths)
    table = pd.DataFrame(rows, columns=columns)
    table["result"] = results
    return table


def read_reference(path, key):
    """One published-numbers CSV, checked for its columns, with the settings of the
    experiment it measured as constant columns (network, image_size, ...)."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"reference table not found: {path}") from None
    _, columns, experiment = REFERENCES[key]
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return table.assign(**experiment)


def _check_unique(what, keys, paths):
    seen = {}
    for key, path in zip(keys, paths, strict=True):
        if key in seen:
            raise ValueError(f"two files for the same {what} {key}: {seen[key]} and {path}")
        seen[key] = path


def device_label(gpus):
    """'CPU' for gpus 0 (the contracts' convention), else the GPU count."""
    if pd.isna(gpus):
        return "unknown"
    gpus = int(gpus)
    return "CPU" if gpus == 0 else f"{gpus} GPU" + ("s" if gpus > 1 else "")


def setup_suffix(network, image_size):
    """', 32 px' (and the network when it is not ResNet-50 v1.5) for legends, so that a
    demo point is never read as one at the reference's 224 px; '' for the reference's."""
    parts = [] if network == REFERENCE_SETUP["network"] else [network]
    parts += [] if image_size == REFERENCE_SETUP["image_size"] else [f"{image_size} px"]
    return "".join(f", {part}" for part in parts)


def same_experiment(table, experiment):
    """True for rows on GPUs whose columns equal the experiment's settings."""
    same = table["gpus"].fillna(0).astype(int) >= 1
    for column, value in experiment.items():
        same &= table[column].eq(value).fillna(False).astype(bool)
    return same


# ---------------------------------------------------------------- tables


def accuracy_table(runs, scores, reference):
    """One row per run that has a training report or a score: GPUs, dtype, setup, top-1 and
    top-5 (percent, from the score), wall time (hours, from the training report), and the
    reference of the same experiment at the same GPU count and dtype with ratios."""
    columns = ["run", "gpus", "dtype", *REFERENCE_SETUP, *REFERENCE_TASK]
    trained = pd.DataFrame(
        [
            {**run["report"], **run["setup"], "training_time_h": run["report"]["train_seconds"]}
            for run in runs
        ],
        columns=[*columns, "training_time_h"],
    )
    trained["training_time_h"] /= 3600.0
    scored = pd.DataFrame(
        [
            {
                "run": s["run"],
                "score_dtype": s["dtype"],
                "top1_percent": 100.0 * s["top1"],
                "top5_percent": 100.0 * s["top5"],
            }
            for s in scores
        ],
        columns=["run", "score_dtype", "top1_percent", "top5_percent"],
    )
    table = trained.merge(scored, on="run", how="outer", sort=False)
    # A score without its training report still knows the precision it was scored in.
    table["dtype"] = table["dtype"].fillna(table.pop("score_dtype"))
    table = table.astype({name: "Int64" for name in ("gpus", "image_size", *REFERENCE_TASK)})
    table.insert(2, "device", table["gpus"].map(device_label))

    ref = reference.rename(
        columns={"top1": "reference_top1_percent", "training_time_h": "reference_training_time_h"}
    )[[*ACCURACY_KEYS, "reference_top1_percent", "reference_training_time_h"]]
    table = table.merge(ref, on=ACCURACY_KEYS, how="left")
    table["top1_ratio"] = table["top1_percent"] / table["reference_top1_percent"]
    table["training_time_ratio"] = table["training_time_h"] / table["reference_training_time_h"]
    table["reference_hardware"] = _hardware_where(table["reference_top1_percent"])
    table = table[_csv_columns(ACCURACY_COLUMNS)]
    return table.sort_values(["dtype", "gpus", "run"], ignore_index=True)


def add_speedup_and_scaling(points):
    """Add the FP16 speedup and weak scaling columns to training throughput points
    (columns dtype, gpus, batch_per_device, images_per_s, network, image_size); points
    are only set against points of the same network and image size.

    fp16_speedup (float16 rows only) = float16 images/s / float32 images/s at the same GPU
    count. The float32 point has the same batch per GPU when that was measured, otherwise
    the largest float32 batch at that GPU count, as the original README compared FP16 at
    batch 208 with FP32 at batch 96; speedup_fp32_batch names the batch used.

    weak_scaling = images/s at N GPUs / images/s at 1 GPU of the same dtype and batch per
    GPU (1.0 on the 1-GPU row; none on CPU rows, which have no 1-GPU baseline).
    """
    points = points.reset_index(drop=True).copy()
    fp32 = points[points["dtype"] == "float32"]
    speedup, fp32_batch = [], []
    for row in points.itertuples():
        same_gpus = fp32[
            (fp32["gpus"] == row.gpus)
            & (fp32["network"] == row.network)
            & (fp32["image_size"] == row.image_size)
        ]
        if row.dtype != "float16" or same_gpus.empty:
            speedup.append(np.nan)
            fp32_batch.append(pd.NA)
            continue
        same_batch = same_gpus[same_gpus["batch_per_device"] == row.batch_per_device]
        if same_batch.empty:
            same_batch = same_gpus.nlargest(1, "batch_per_device")
        base = same_batch.iloc[0]
        speedup.append(row.images_per_s / base["images_per_s"])
        fp32_batch.append(base["batch_per_device"])
    points["fp16_speedup"] = speedup
    points["speedup_fp32_batch"] = pd.array(fp32_batch, dtype="Int64")

    series = ["dtype", "batch_per_device", *REFERENCE_SETUP]
    one_gpu = points.loc[points["gpus"] == 1, [*series, "images_per_s"]]
    one_gpu = one_gpu.rename(columns={"images_per_s": "one_gpu_images_per_s"})
    with_base = points.merge(one_gpu, on=series, how="left")
    scaling = with_base["images_per_s"] / with_base["one_gpu_images_per_s"]
    points["weak_scaling"] = scaling.where(with_base["gpus"] >= 1).to_numpy()
    return points


def training_throughput_table(bench, reference):
    """One row per training benchmark point with speedup, weak scaling and the reference
    of the same experiment at the same GPU count, dtype and batch per GPU (with its own
    speedup and scaling)."""
    measured = add_speedup_and_scaling(bench.drop(columns="result"))
    measured.insert(2, "device", measured["gpus"].map(device_label))
    ref = add_speedup_and_scaling(
        reference.rename(columns={"img_per_s": "images_per_s"})[[*TRAINING_KEYS, "images_per_s"]]
    )
    ref = ref.rename(
        columns={
            "images_per_s": "reference_images_per_s",
            "fp16_speedup": "reference_fp16_speedup",
            "weak_scaling": "reference_weak_scaling",
        }
    ).drop(columns="speedup_fp32_batch")
    table = measured.merge(ref, on=TRAINING_KEYS, how="left")
    table["images_per_s_ratio"] = table["images_per_s"] / table["reference_images_per_s"]
    table["reference_hardware"] = _hardware_where(table["reference_images_per_s"])
    table = table[_csv_columns(TRAINING_COLUMNS)].astype(
        {"gpus": "Int64", "batch_per_device": "Int64"}
    )
    order = ["dtype", *REFERENCE_SETUP, "batch_per_device", "gpus"]
    return table.sort_values(order, ignore_index=True)


def inference_table(bench, reference):
    """One row per inference benchmark point with the reference (one V100) of the same
    experiment at the same dtype and batch size and the measured/reference ratio."""
    measured = bench.drop(columns="result")
    measured.insert(2, "device", measured["gpus"].map(device_label))
    ref = reference.rename(columns={"img_per_s": "reference_images_per_s"})
    table = measured.merge(
        ref[[*INFERENCE_KEYS, "reference_images_per_s"]], on=INFERENCE_KEYS, how="left"
    )
    table["images_per_s_ratio"] = table["images_per_s"] / table["reference_images_per_s"]
    table["reference_hardware"] = _hardware_where(
        table["reference_images_per_s"], hardware=REFERENCE_INFERENCE_HARDWARE
    )
    table = table[_csv_columns(INFERENCE_COLUMNS)].astype({"gpus": "Int64", "batch_size": "Int64"})
    order = ["dtype", *REFERENCE_SETUP, "gpus", "batch_size"]
    return table.sort_values(order, ignore_index=True)


def _csv_columns(markdown_columns):
    """A table's CSV columns: the GPU count, its Markdown columns, the reference hardware."""
    names = [name for name, _, _ in markdown_columns if name != "gpus"]
    return ["gpus", *names, "reference_hardware"]


def _hardware_where(reference_values, hardware=REFERENCE_HARDWARE):
    return reference_values.notna().map({True: hardware, False: ""})


def epoch_metrics(runs):
    """Per-epoch metrics of all runs in one long table, accuracies in percent, with the
    legend label of each run (name, dtype, GPUs and, when not the reference's, setup)."""
    rows = []
    for run in runs:
        report, setup = run["report"], run["setup"]
        label = f"{report['run']} ({report['dtype']}, {device_label(report['gpus'])}"
        label += setup_suffix(setup["network"], setup["image_size"]) + ")"
        for epoch in run["epochs"]:
            rows.append({"run": report["run"], "label": label, **epoch})
    table = pd.DataFrame(rows, columns=["run", "label", *METRICS_FIELDS])
    for name in METRICS_FIELDS:
        table[name] = pd.to_numeric(table[name], errors="coerce")
    table["train_top1"] *= 100.0
    table["val_top1"] *= 100.0
    return table


def write_csv(path, table):
    with atomic_open(path) as handle:
        table.to_csv(handle, index=False, float_format="%.7g")


# ---------------------------------------------------------------- what is missing


def accuracy_gaps(runs, scores, table):
    """Sentences naming what the accuracy table lacks."""
    if table.empty:
        return ["No training runs and no scores were given, so there is no accuracy table."]
    notes = []
    trained = {run["report"]["run"] for run in runs}
    scored = {score["run"] for score in scores}
    for run in sorted(trained - scored):
        notes.append(f"Run {run} has no score file: top-1 and top-5 are missing.")
    for run in sorted(scored - trained):
        notes.append(f"Run {run} has a score but no training report: GPUs and wall time missing.")
    notes += _absent_dtypes(table, "runs")
    notes += _reference_gaps(
        table[table["gpus"].notna()],
        "reference_top1_percent",
        {**REFERENCE_SETUP, **REFERENCE_TASK},
        "runs",
        "GPU count and dtype",
    )
    return notes


def training_gaps(table):
    if table.empty:
        return ["No training benchmark results were given, so there is no throughput table."]
    notes = _absent_dtypes(table, "training benchmark points")
    fp16 = table[table["dtype"] == "float16"]
    if len(fp16) and not (table["dtype"] == "float32").any():
        notes.append("FP16 speedup needs float32 points at the same GPU count: none measured.")
    elif len(fp16):
        for device in fp16.loc[fp16["fp16_speedup"].isna(), "device"].unique():
            notes.append(f"No float32 point on {device}: no FP16 speedup there.")
    for (dtype, batch), group in table[table["gpus"] >= 1].groupby(["dtype", "batch_per_device"]):
        if group["weak_scaling"].isna().all():
            notes.append(f"No 1-GPU point for {dtype} batch {batch}: no weak scaling for it.")
    if (table["gpus"] == 0).any():
        notes.append("CPU points have no weak scaling: it is defined against one GPU.")
    notes += _reference_gaps(
        table, "reference_images_per_s", REFERENCE_SETUP, "points", "GPU count, dtype and batch"
    )
    return notes


def inference_gaps(table):
    if table.empty:
        return ["No inference benchmark results were given, so there is no inference table."]
    notes = _absent_dtypes(table, "inference benchmark points")
    notes += _reference_gaps(
        table, "reference_images_per_s", REFERENCE_SETUP, "points", "dtype and batch size"
    )
    return notes


def _absent_dtypes(table, what):
    present = set(table["dtype"].dropna())
    return [f"No {dtype} {what}." for dtype in DTYPES if dtype not in present]


def _reference_gaps(table, reference_column, experiment, what, key):
    """Why measured rows have no reference: one sentence naming the rows of another
    experiment by what differs (CPU, image size, network, classes, epochs), one counting
    the rows of the reference's experiment at a point the reference lacks."""
    unmatched = table[table[reference_column].isna()]
    differing = [f"CPU {what}"] if (unmatched["gpus"] == 0).any() else []
    for column, wanted in experiment.items():
        for value in sorted(set(unmatched[column].dropna()) - {wanted}):
            differing.append(DIFFERENCE_WORDS[column].format(what=what, value=value))
    notes = []
    if differing:
        listed = ", ".join(differing[:-1]) + " and " * (len(differing) > 1) + differing[-1]
        setup = f"{REFERENCE_SETUP_TEXT} on V100 GPUs"
        setup += f", {REFERENCE_TASK_TEXT}" if "epochs" in experiment else ""
        notes.append(
            f"{listed[0].upper()}{listed[1:]} are not compared with the reference, which is "
            f"{setup}: they are not the same experiment."
        )
    alike = int(same_experiment(table, experiment).sum())
    alike_unmatched = int(same_experiment(unmatched, experiment).sum())
    if alike_unmatched:
        verb = "has" if alike_unmatched == 1 else "have"
        notes.append(
            f"{alike_unmatched} of {alike} measured {what} of the reference's experiment "
            f"{verb} no reference point at the same {key}."
        )
    return notes


# ---------------------------------------------------------------- Markdown


def _number(digits):
    return lambda value: f"{value:.{digits}f}"


def _ratio(value):
    return f"{value:.3f}"


def _hours(value):
    """3.00 and 22.90 h, but 0.0833 h for a demo run of five minutes."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def _text(value):
    return str(value)


# (column, Markdown header, formatter); the CSVs hold every column unformatted. The network
# column shows only when some row is not ResNet-50 v1.5 (see _shown_columns).
NETWORK_COLUMN = ("network", "network", _text)
IMAGE_COLUMN = ("image_size", "image (px)", _text)
ACCURACY_COLUMNS = [
    ("run", "run", _text),
    ("device", "GPUs", _text),
    ("dtype", "dtype", _text),
    NETWORK_COLUMN,
    IMAGE_COLUMN,
    ("classes", "classes", _text),
    ("epochs", "epochs", _text),
    ("top1_percent", "top-1 (%)", _number(2)),
    ("top5_percent", "top-5 (%)", _number(2)),
    ("training_time_h", "wall time (h)", _hours),
    ("reference_top1_percent", "reference top-1 (%)", _number(2)),
    ("top1_ratio", "top-1 measured/reference", _ratio),
    ("reference_training_time_h", "reference wall time (h)", _hours),
    ("training_time_ratio", "wall time measured/reference", _ratio),
]
TRAINING_COLUMNS = [
    ("device", "GPUs", _text),
    ("dtype", "dtype", _text),
    NETWORK_COLUMN,
    IMAGE_COLUMN,
    ("batch_per_device", "batch per GPU", _text),
    ("global_batch", "global batch", _text),
    ("input", "input", _text),
    ("images_per_s", "images/s", _number(1)),
    ("fp16_speedup", "FP16 speedup", _number(2)),
    ("speedup_fp32_batch", "vs FP32 batch", _text),
    ("weak_scaling", "weak scaling", _number(2)),
    ("reference_images_per_s", "reference images/s", _number(1)),
    ("images_per_s_ratio", "images/s measured/reference", _ratio),
    ("reference_fp16_speedup", "reference FP16 speedup", _number(2)),
    ("reference_weak_scaling", "reference weak scaling", _number(2)),
]
INFERENCE_COLUMNS = [
    ("dtype", "dtype", _text),
    ("device", "device", _text),
    NETWORK_COLUMN,
    IMAGE_COLUMN,
    ("batch_size", "batch", _text),
    ("input", "input", _text),
    ("images_per_s", "images/s", _number(1)),
    *[(f"latency_{p}_ms", f"latency {p} (ms)", _number(2)) for p in LATENCY_PERCENTILES],
    ("reference_images_per_s", "reference images/s", _number(1)),
    ("images_per_s_ratio", "images/s measured/reference", _ratio),
]


def markdown_table(table, columns):
    """A pipe table; missing values are empty cells."""
    header = [title for _, title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [
            "" if pd.isna(row[name]) or row[name] == "" else fmt(row[name]).replace("|", "\\|")
            for name, _, fmt in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown_columns(table, columns):
    """The Markdown columns of a table, without the network when every row has the
    reference's (the report's title names it)."""
    networks = set(table["network"].dropna())
    if networks <= {REFERENCE_SETUP["network"]}:
        return [column for column in columns if column != NETWORK_COLUMN]
    return columns


def _unmatched_reference(reference, table, keys):
    """Reference rows that no measured row shares `keys` (the experiment included) with."""
    merged = reference.merge(table[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    return reference[(merged["_merge"] == "left_only").to_numpy()]


def _machine_line(machine):
    if not isinstance(machine, dict):
        return str(machine)
    parts = [
        f"{key}: {', '.join(map(str, value)) or 'none' if isinstance(value, list) else value}"
        for key, value in sorted(machine.items())
        if not isinstance(value, dict)
    ]
    return "; ".join(parts)


@dataclass(frozen=True)
class Section:
    """One table of report.md: what it shows, the measured rows, notes on what is missing
    or not compared, and the reference points that no measured row matched."""

    title: str
    explanation: str
    table: pd.DataFrame
    columns: list
    notes: list
    unmatched_reference: pd.DataFrame
    reference_columns: list

    def markdown(self):
        parts = [f"## {self.title}\n", self.explanation + "\n"]
        if not self.table.empty:
            parts.append(markdown_table(self.table, _shown_columns(self.table, self.columns)))
            parts[-1] += "\n"
        if self.notes:
            parts.append("**Notes:**\n\n" + "\n".join(f"- {note}" for note in self.notes) + "\n")
        if not self.unmatched_reference.empty:
            parts.append(
                "Reference points not measured here:\n\n"
                + markdown_table(self.unmatched_reference, self.reference_columns)
                + "\n"
            )
        return "\n".join(parts)


def report_sections(runs, scores, accuracy, training, inference, reference):
    """The three table sections of report.md."""
    return [
        Section(
            title="Accuracy and training time",
            explanation=(
                "Top-1 and top-5 (percent) of each run's scored checkpoint on the validation "
                "set, and the wall time of its whole training. Reference columns: "
                f"{REFERENCE_HARDWARE}, {REFERENCE_TASK_TEXT}, same GPU count and dtype; "
                "only for GPU runs of that experiment."
            ),
            table=accuracy,
            columns=ACCURACY_COLUMNS,
            notes=accuracy_gaps(runs, scores, accuracy),
            unmatched_reference=_unmatched_reference(
                reference["accuracy"], accuracy, ACCURACY_KEYS
            ),
            reference_columns=[
                ("gpus", "GPUs", _text),
                ("dtype", "dtype", _text),
                ("top1", "reference top-1 (%)", _number(2)),
                ("training_time_h", "reference wall time (h)", _hours),
            ],
        ),
        Section(
            title="Training throughput",
            explanation=(
                "Total images/s (data pipeline plus compute) after the warmup epochs. "
                "FP16 speedup = float16 images/s / float32 images/s at the same GPU count, "
                "with the same batch per GPU where both were measured, otherwise float32's "
                "largest batch at that GPU count (column 'vs FP32 batch'; the original "
                "compared batch 208 with 96). Weak scaling = images/s at N GPUs / images/s at "
                "1 GPU, same dtype and batch per GPU. Reference columns: "
                f"{REFERENCE_HARDWARE}, same GPU count, dtype and batch per GPU; only for GPU "
                "points of the reference's experiment."
            ),
            table=training,
            columns=TRAINING_COLUMNS,
            notes=training_gaps(training),
            unmatched_reference=_unmatched_reference(
                reference["training"], training, TRAINING_KEYS
            ),
            reference_columns=[
                ("gpus", "GPUs", _text),
                ("dtype", "dtype", _text),
                ("batch_per_device", "batch per GPU", _text),
                ("img_per_s", "reference images/s", _number(1)),
            ],
        ),
        Section(
            title="Inference throughput and latency",
            explanation=(
                "Images/s and latency per batch over the timed iterations after warmup. "
                f"Reference columns: {REFERENCE_INFERENCE_HARDWARE}, same dtype and batch "
                "size; only for one-GPU points of the reference's experiment."
            ),
            table=inference,
            columns=INFERENCE_COLUMNS,
            notes=inference_gaps(inference),
            unmatched_reference=_unmatched_reference(
                reference["inference"], inference, INFERENCE_KEYS
            ),
            reference_columns=[
                ("dtype", "dtype", _text),
                ("batch_size", "batch", _text),
                ("img_per_s", "reference images/s", _number(1)),
            ],
        ),
    ]


GRAPH_TITLES = {
    "training_loss_png": "Training loss",
    "training_top1_png": "Training top-1",
    "validation_top1_png": "Validation top-1",
    "training_scaling_png": "Training throughput against GPU count",
    "inference_throughput_png": "Inference throughput against batch size",
    "inference_latency_png": "Inference latency against batch size",
}


def report_markdown(sections, machines, graph_notes, outputs):
    """The whole report.md: the table sections, then the graphs (linked relative to it),
    each followed by its note when it has one."""
    folder = os.path.dirname(os.path.abspath(outputs.markdown))
    parts = [
        "# ResNet-50 v1.5 on MXNet: results\n",
        "Measured results of this workflow beside the published numbers of NVIDIA's "
        f"recipe: **reference = {REFERENCE_HARDWARE}, {REFERENCE_SETUP_TEXT}**. A measured "
        "point gets reference values and measured/reference ratios only when it is the "
        f"reference's experiment: on GPUs, {REFERENCE_SETUP_TEXT} (for accuracy also "
        f"{REFERENCE_TASK_TEXT}), same GPU count, dtype and batch. Accuracies are in "
        "percent; GPUs = CPU means the run or benchmark ran on the CPU; image (px) is the "
        "input size.\n",
    ]
    measured_on = sorted({_machine_line(machine) for machine in machines})
    if measured_on:
        lines = "\n".join(f"- {machine}" for machine in measured_on)
        parts.append(f"Benchmarks measured on:\n\n{lines}\n")
    parts += [section.markdown() for section in sections]
    parts.append("## Graphs\n")
    for key, title in GRAPH_TITLES.items():
        path = os.path.relpath(os.path.abspath(getattr(outputs, key)), folder)
        parts.append(f"### {title}\n\n![{title}]({path})\n")
        if graph_notes[key]:
            parts.append(graph_notes[key] + "\n")
    return "\n".join(parts)


# ---------------------------------------------------------------- graphs

DTYPE_COLORS = {"float16": "tab:blue", "float32": "tab:orange"}
# Color by dtype, marker by series, so that series of one dtype stay apart in the legend.
SERIES_MARKERS = "osD^vP*X"
FIGURE_SIZE = (10, 5.4)
FIGURE_DPI = 110


def _figure():
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    return figure, figure.add_subplot()


def _save(figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write_missing_figure(path, title, message):
    """A PNG that says in words what is missing, instead of empty axes."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    figure.text(0.5, 0.62, title, ha="center", va="center", fontsize=16, weight="bold")
    figure.text(0.5, 0.45, message, ha="center", va="center", fontsize=12, wrap=True)
    _save(figure, path)


def _finish(axes, title, xlabel, ylabel, notes=()):
    """Title, axis labels (notes as further lines under the x label), grid and legend."""
    axes.set_title(title)
    axes.set_xlabel("\n".join([xlabel, *notes]))
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def _log_axis(axis, values):
    """Log scale with plain-number ticks (20, 500, 1000): 1, 2, 3 and 5 per decade when the
    values span two decades or less, else 1, 2 and 5, so labels neither crowd nor vanish."""
    values = [value for value in values if value > 0]
    decades = math.log10(max(values) / min(values)) if values else 0.0
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 2 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def plot_epoch_curves(metrics, column, ylabel, path):
    """One figure of `column` per epoch, all runs overlaid. Returns a note for report.md
    when nothing could be drawn, else ''."""
    title = f"{ylabel[0].upper()}{ylabel[1:].split(' (')[0]} per epoch"
    values = metrics.dropna(subset=[column])
    if values.empty:
        message = (
            "No training runs were given."
            if metrics.empty
            else f"No run has a {column} value in its metrics.jsonl."
        )
        write_missing_figure(path, title, message)
        return message
    figure, axes = _figure()
    for label, run in values.groupby("label", sort=True):
        run = run.sort_values("epoch")
        axes.plot(run["epoch"], run[column], marker="o", markersize=3, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(axes, title, "epoch", ylabel)
    _save(figure, path)
    return ""


def _gpu_positions(gpu_counts):
    """x positions for GPU counts on a log2 axis, with the CPU (gpus 0) one step left of
    the smallest GPU count."""
    counts = sorted({int(g) for g in gpu_counts})
    gpus = [g for g in counts if g > 0]
    cpu_position = (math.log2(min(gpus)) if gpus else 0.0) - 1.0
    return {g: (math.log2(g) if g > 0 else cpu_position) for g in counts}


def _comparable_reference(measured, reference):
    """The reference rows of the dtypes that have a measured point of the reference's
    experiment, and the notes saying which dtypes' reference is left out for that."""
    comparable = set(measured.loc[same_experiment(measured, REFERENCE_SETUP), "dtype"])
    left_out = " or ".join(sorted(set(measured["dtype"]) - comparable))
    notes = [f"V100 reference not drawn: no {left_out} point is {REFERENCE_SETUP_TEXT} on GPUs."]
    return reference[reference["dtype"].isin(comparable)], notes if left_out else []


def plot_training_scaling(training, reference, path):
    """Images/s against GPU count per dtype, batch per GPU and setup, with ideal linear
    scaling from each 1-GPU point and the reference points of the dtypes measured in the
    reference's experiment. CPU points stand apart at the left: a line from the CPU to one
    GPU would mean nothing. Returns a note for report.md, or ''."""
    title = "Training throughput against GPU count"
    if training.empty:
        message = "No training benchmark results were given."
        write_missing_figure(path, title, message)
        return message
    reference, notes = _comparable_reference(training, reference)
    positions = _gpu_positions([*training["gpus"], *reference["gpus"]])
    gpu_counts = [g for g in positions if g >= 1]
    figure, axes = _figure()
    ideal_drawn = False  # one grey legend entry stands for every dashed ideal line
    series = training.assign(on_cpu=training["gpus"] == 0)
    keys = ["dtype", "batch_per_device", "on_cpu", *REFERENCE_SETUP]
    for number, (key, points) in enumerate(series.groupby(keys)):
        dtype, batch, on_cpu, network, image_size = key
        points = points.sort_values("gpus")
        style = {"color": DTYPE_COLORS[dtype], "marker": SERIES_MARKERS[number % 8]}
        where = ", CPU" if on_cpu else " per GPU"
        axes.plot(
            [positions[int(g)] for g in points["gpus"]],
            points["images_per_s"],
            label=f"{dtype}, batch {batch}{where}{setup_suffix(network, image_size)}",
            **style,
        )
        if on_cpu:
            continue
        one_gpu = points.loc[points["gpus"] == 1, "images_per_s"]
        if one_gpu.empty:
            notes.append(f"No 1-GPU point for {dtype} batch {batch}, so no ideal line.")
        elif len(gpu_counts) > 1:
            axes.plot(
                [positions[g] for g in gpu_counts],
                [float(one_gpu.iloc[0]) * g for g in gpu_counts],
                color=style["color"],
                linestyle="--",
                linewidth=1,
            )
            ideal_drawn = True
    if ideal_drawn:
        axes.plot(
            [], [], color="grey", linestyle="--", linewidth=1, label="ideal linear from 1 GPU"
        )
    for (dtype, batch), points in reference.groupby(["dtype", "batch_per_device"]):
        points = points.sort_values("gpus")
        axes.plot(
            [positions[int(g)] for g in points["gpus"]],
            points["img_per_s"],
            color=DTYPE_COLORS[dtype],
            linestyle=":",
            marker="o",
            markerfacecolor="white",
            zorder=1.5,  # under the measured points it may coincide with
            label=f"{dtype}, batch {batch} per GPU: {REFERENCE_LABEL}",
        )
    axes.set_yscale("log")
    _log_axis(axes.yaxis, [*training["images_per_s"], *reference["img_per_s"]])
    axes.set_xticks(
        list(positions.values()), labels=[device_label(g) if g == 0 else str(g) for g in positions]
    )
    axes.set_xlim(min(positions.values()) - 0.3, max(positions.values()) + 0.3)
    _finish(axes, title, "GPUs (log2 scale)", "training throughput (images/s, log scale)", notes)
    _save(figure, path)
    return " ".join(notes)


def _batch_ticks(measured, reference):
    """Batch sizes to label on a log2 axis: measured ones first, then reference ones, each
    left out when too close to a label already placed to be read (192 beside 208)."""
    ticks = []
    for batch in [*sorted(measured), *sorted(set(reference) - set(measured))]:
        if all(abs(math.log2(batch) - math.log2(tick)) >= 0.3 for tick in ticks):
            ticks.append(batch)
    return sorted(ticks)


def plot_inference(inference, reference, quantity, path):
    """Inference images/s ("throughput", with the reference of the dtypes measured in the
    reference's experiment) or latency ("latency": mean, with a bar from p50 to p99)
    against batch size on a log2 axis, per dtype, device and setup. Returns a note for
    report.md, or ''."""
    title = f"Inference {quantity} against batch size"
    if inference.empty:
        message = "No inference benchmark results were given."
        write_missing_figure(path, title, message)
        return message
    throughput = quantity == "throughput"
    drawn = (
        ["images_per_s"] if throughput else ["latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
    )
    # The reference has images/s only.
    reference, notes = (
        _comparable_reference(inference, reference) if throughput else (reference[:0], [])
    )
    figure, axes = _figure()
    keys = ["dtype", "device", *REFERENCE_SETUP]
    for number, ((dtype, device, network, image_size), points) in enumerate(
        inference.groupby(keys)
    ):
        points = points.sort_values("batch_size")
        batch = points["batch_size"].astype(float)
        color = DTYPE_COLORS[dtype]
        series = f"{dtype}, {device}{setup_suffix(network, image_size)}"
        label = series + ("" if throughput else ": mean")
        marker = SERIES_MARKERS[number % 8]
        axes.plot(batch, points[drawn[0]], color=color, marker=marker, label=label)
        if not throughput:
            # A translucent bar per batch size rather than a shaded band: it also shows
            # when there is only one batch size.
            axes.vlines(
                batch,
                points["latency_p50_ms"].astype(float),
                points["latency_p99_ms"].astype(float),
                color=color,
                linewidth=8,
                alpha=0.3,
                label=f"{series}: p50 to p99",
            )
    for dtype, points in reference.groupby("dtype"):
        points = points.sort_values("batch_size")
        axes.plot(
            points["batch_size"],
            points["img_per_s"],
            color=DTYPE_COLORS[dtype],
            linestyle=":",
            marker="o",
            markerfacecolor="white",
            zorder=1.5,  # under the measured points it may coincide with
            label=f"{dtype}, 1 V100: {REFERENCE_LABEL}",
        )
    axes.set_xscale("log", base=2)
    ticks = _batch_ticks(inference["batch_size"].astype(int), reference["batch_size"].astype(int))
    axes.set_xticks(ticks, labels=[str(batch) for batch in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_yscale("log")
    _log_axis(axes.yaxis, [*inference[drawn].to_numpy().ravel(), *reference["img_per_s"]])
    ylabel = (
        "inference throughput (images/s, log scale)"
        if throughput
        else "latency per batch (ms, log scale)"
    )
    _finish(axes, title, "batch size (images, log2 scale)", ylabel, notes)
    _save(figure, path)
    return " ".join(notes)
