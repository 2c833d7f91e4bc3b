"""The report's tables, built from what inputs.py read: accuracy per run, training
throughput (with FP16 speedup and weak scaling) and inference per benchmark point, each
beside the reference point of the same experiment; both engines' accuracy per run (MXNet
and the run's ONNX export in onnxruntime); and the per-epoch metrics of all runs.

Each table's columns are listed once below as (column, Markdown header, formatter): the
CSVs hold every column unformatted, report.md shows them formatted.
"""

import numpy as np
import pandas as pd

from resnet_recipe.files.atomic_files import atomic_open
from resnet_recipe.report.experiment import (
    ACCURACY_KEYS,
    INFERENCE_KEYS,
    REFERENCE_HARDWARE,
    REFERENCE_INFERENCE_HARDWARE,
    REFERENCE_SETUP,
    REFERENCE_TASK,
    TRAINING_KEYS,
    device_label,
    nodes_label,
    setup_suffix,
)
from resnet_recipe.report.inputs import LATENCY_STATISTICS, MXNET_ENGINE, network_name
from resnet_recipe.report.replicas import families, time_to_target

# The per-epoch metrics (fields of metrics.jsonl) that the graphs draw.
EPOCH_COLUMNS = ("epoch", "train_loss", "train_top1", "val_top1")


def _number(digits):
    return lambda value: f"{value:.{digits}f}"


def _ratio(value):
    return f"{value:.3f}"


def _hours(value):
    """3.00 and 22.90 h, but 0.0833 h for a demo run of five minutes."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def _text(value):
    return str(value)


# The network column shows in report.md only when some row is not ResNet-50 v1.5 (see
# _shown_columns in markdown.py).
NETWORK_COLUMN = ("network", "network", _text)
IMAGE_COLUMN = ("image_size", "image (px)", _text)
# The engine column shows in report.md only when some point is not MXNet's.
ENGINE_COLUMN = ("engine", "engine", _text)
# Why a benchmark point counts as disturbed by other work on the machine; empty if not.
DISTURBED_COLUMN = ("disturbed", "disturbed while measured", _text)
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
    ("target_epoch", "epoch to target", _text),
    ("target_time_h", "hours to target", _hours),
    ("reference_top1_percent", "reference top-1 (%)", _number(2)),
    ("top1_ratio", "top-1 measured/reference", _ratio),
    ("reference_training_time_h", "reference wall time (h)", _hours),
    ("training_time_ratio", "wall time measured/reference", _ratio),
]
TRAINING_COLUMNS = [
    ("device", "nodes x GPUs", _text),
    ("dtype", "dtype", _text),
    NETWORK_COLUMN,
    IMAGE_COLUMN,
    ("batch_per_device", "batch per GPU", _text),
    ("global_batch", "global batch", _text),
    ("input", "input", _text),
    ("layout", "layout", _text),
    ("images_per_s", "images/s (unwaited batch ends)", _number(1)),
    ("wall_images_per_s", "images/s (epoch wall time)", _number(1)),
    ("val_images_per_s", "validation images/s", _number(1)),
    ("fp16_speedup", "FP16 speedup", _number(2)),
    ("speedup_fp32_batch", "vs FP32 batch", _text),
    ("weak_scaling", "weak scaling", _number(2)),
    ("ideal_scaling", "ideal scaling", _text),
    ("reference_images_per_s", "reference images/s", _number(1)),
    ("images_per_s_ratio", "images/s measured/reference", _ratio),
    ("reference_fp16_speedup", "reference FP16 speedup", _number(2)),
    ("reference_weak_scaling", "reference weak scaling", _number(2)),
    DISTURBED_COLUMN,
]
INFERENCE_COLUMNS = [
    ("dtype", "dtype", _text),
    ("device", "device", _text),
    NETWORK_COLUMN,
    IMAGE_COLUMN,
    ("batch_size", "batch", _text),
    ENGINE_COLUMN,
    ("input", "input", _text),
    ("layout", "layout", _text),
    ("images_per_s", "images/s (unwaited)", _number(1)),
    ("latency_images_per_s", "images/s (each batch waited)", _number(1)),
    *[(f"latency_{s}_ms", f"latency {s} (ms, waited)", _number(2)) for s in LATENCY_STATISTICS],
    ("reference_images_per_s", "reference images/s", _number(1)),
    ("images_per_s_ratio", "images/s measured/reference", _ratio),
    DISTURBED_COLUMN,
]
ONNX_COLUMNS = [
    ("run", "run", _text),
    ("dtype", "trained dtype", _text),
    ("images", "images", _text),
    ("mxnet_top1_percent", "MXNet top-1 (%)", _number(2)),
    ("mxnet_float32_top1_percent", "MXNet float32 CPU top-1 (%)", _number(2)),
    ("onnxruntime_top1_percent", "onnxruntime top-1 (%)", _number(2)),
    ("onnxruntime_top5_percent", "onnxruntime top-5 (%)", _number(2)),
    ("same_prediction_fraction", "same prediction (fraction)", _number(4)),
    ("max_abs_logit_difference", "largest logit difference", lambda value: f"{value:.2g}"),
]
# The columns of the reference points that no measured row matched, listed apart.
ACCURACY_REFERENCE_COLUMNS = [
    ("gpus", "GPUs", _text),
    ("dtype", "dtype", _text),
    ("top1", "reference top-1 (%)", _number(2)),
    ("training_time_h", "reference wall time (h)", _hours),
]
TRAINING_REFERENCE_COLUMNS = [
    ("gpus", "GPUs", _text),
    ("dtype", "dtype", _text),
    ("batch_per_device", "batch per GPU", _text),
    ("img_per_s", "reference images/s", _number(1)),
]
INFERENCE_REFERENCE_COLUMNS = [
    ("dtype", "dtype", _text),
    ("batch_size", "batch", _text),
    ("img_per_s", "reference images/s", _number(1)),
]


def accuracy_table(runs, scores, reference, target_top1=None):
    """One row per run that has a training report or a score: GPUs, dtype, setup, top-1 and
    top-5 (percent, from the score), wall time (hours, from the training report), the
    first epoch at which its validation top-1 reached target_top1 (percent) and the wall
    time to its end, and the reference of the same experiment at the same GPU count and
    dtype with ratios."""
    columns = ["run", "gpus", "dtype", *REFERENCE_SETUP, *REFERENCE_TASK]
    trained = pd.DataFrame(
        [
            {
                **run["report"],
                **run["setup"],
                "training_time_h": run["report"]["train_seconds"],
                **_time_to_target(run["epochs"], target_top1),
            }
            for run in runs
        ],
        columns=[*columns, "training_time_h", "target_epoch", "target_time_h"],
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
    integers = ("gpus", "image_size", "target_epoch", *REFERENCE_TASK)
    table = table.astype({name: "Int64" for name in integers})
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


def _time_to_target(epochs, target_top1):
    """{target_epoch, target_time_h} of a run's metrics.jsonl lines (None: not reached, or
    no target)."""
    if target_top1 is None:
        return {"target_epoch": None, "target_time_h": None}
    epoch, hours = time_to_target([epochs], target_top1)
    return {"target_epoch": epoch, "target_time_h": hours}


def add_speedup_and_scaling(points):
    """Add the FP16 speedup, weak scaling and ideal scaling columns to training throughput
    points (columns dtype, gpus (per node), batch_per_device, images_per_s, network,
    image_size, and nodes, 1 when absent); points are only set against points of the same
    network and image size.

    fp16_speedup (float16 rows only) = float16 images/s / float32 images/s at the same
    nodes and GPU count. The float32 point has the same batch per GPU when that was
    measured, otherwise the largest float32 batch at that GPU count, as the original README
    compared FP16 at batch 208 with FP32 at batch 96; speedup_fp32_batch names the batch used.

    weak_scaling = images/s at nodes x N GPUs / images/s at 1 GPU on 1 node of the same
    dtype and batch per GPU (1.0 on the 1-GPU row; none on CPU rows, which have no 1-GPU
    baseline); ideal_scaling = nodes x N, what it would be if every GPU added a whole GPU's
    images/s.
    """
    points = points.reset_index(drop=True).copy()
    if "nodes" not in points:
        points["nodes"] = 1
    fp32 = points[points["dtype"] == "float32"]
    speedup, fp32_batch = [], []
    for row in points.itertuples():
        same_gpus = fp32[
            (fp32["gpus"] == row.gpus)
            & (fp32["nodes"] == row.nodes)
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
    one_gpu = points.loc[(points["gpus"] == 1) & (points["nodes"] == 1), [*series, "images_per_s"]]
    one_gpu = one_gpu.rename(columns={"images_per_s": "one_gpu_images_per_s"})
    with_base = points.merge(one_gpu, on=series, how="left")
    scaling = with_base["images_per_s"] / with_base["one_gpu_images_per_s"]
    on_gpus = with_base["gpus"] >= 1
    points["weak_scaling"] = scaling.where(on_gpus).to_numpy()
    ideal = (points["gpus"] * points["nodes"]).astype("Int64")
    points["ideal_scaling"] = ideal.where(on_gpus.to_numpy(), pd.NA)
    return points


def training_throughput_table(bench, reference):
    """One row per training benchmark point (nodes x GPUs per node) with speedup, weak and
    ideal scaling and the reference of the same experiment at the same GPU count on one
    node, dtype and batch per GPU (with its own speedup and scaling)."""
    measured = add_speedup_and_scaling(bench.drop(columns="result"))
    labels = [nodes_label(n, g) for n, g in zip(measured["nodes"], measured["gpus"], strict=True)]
    measured.insert(2, "device", labels)
    ref = add_speedup_and_scaling(
        reference.rename(columns={"img_per_s": "images_per_s"})[[*TRAINING_KEYS, "images_per_s"]]
    ).drop(columns="ideal_scaling")
    # The reference ran on one node: multi-node points have none.
    ref = ref.rename(
        columns={
            "images_per_s": "reference_images_per_s",
            "fp16_speedup": "reference_fp16_speedup",
            "weak_scaling": "reference_weak_scaling",
        }
    ).drop(columns="speedup_fp32_batch")
    table = measured.merge(ref, on=[*TRAINING_KEYS, "nodes"], how="left")
    table["images_per_s_ratio"] = table["images_per_s"] / table["reference_images_per_s"]
    table["reference_hardware"] = _hardware_where(table["reference_images_per_s"])
    table = table[["nodes", *_csv_columns(TRAINING_COLUMNS)]].astype(
        {"gpus": "Int64", "nodes": "Int64", "batch_per_device": "Int64"}
    )
    order = ["dtype", *REFERENCE_SETUP, "batch_per_device", "nodes", "gpus"]
    return table.sort_values(order, ignore_index=True)


def inference_table(bench, reference):
    """One row per inference benchmark point with the reference (one V100) of the same
    experiment at the same dtype and batch size and the measured/reference ratio."""
    measured = bench.drop(columns="result")
    measured.insert(2, "device", measured["gpus"].map(device_label))
    # The reference measured MXNet: another engine's point is another experiment.
    ref = reference.rename(columns={"img_per_s": "reference_images_per_s"})
    ref = ref.assign(engine=MXNET_ENGINE)[[*INFERENCE_KEYS, "engine", "reference_images_per_s"]]
    table = measured.merge(ref, on=[*INFERENCE_KEYS, "engine"], how="left")
    table["images_per_s_ratio"] = table["images_per_s"] / table["reference_images_per_s"]
    table["reference_hardware"] = _hardware_where(
        table["reference_images_per_s"], hardware=REFERENCE_INFERENCE_HARDWARE
    )
    table = table[_csv_columns(INFERENCE_COLUMNS)].astype({"gpus": "Int64", "batch_size": "Int64"})
    order = ["dtype", *REFERENCE_SETUP, "gpus", "engine", "batch_size"]
    return table.sort_values(order, ignore_index=True)


def onnx_table(scores, parities):
    """One row per run with an ONNX parity result: MXNet's top-1 of the run's score (in the
    dtype it trained in), and from the parity pass on the same validation batches MXNet's
    float32 CPU top-1, onnxruntime's top-1 and top-5 (percent), the fraction of images on
    which both engines predict the same class and the largest logit difference."""
    score_top1 = {score["run"]: 100.0 * score["top1"] for score in scores}
    score_dtype = {score["run"]: score["dtype"] for score in scores}
    rows = [
        {
            "run": parity["run"],
            "dtype": score_dtype.get(parity["run"]),
            "images": parity["images"],
            "mxnet_top1_percent": score_top1.get(parity["run"], np.nan),
            "mxnet_float32_top1_percent": 100.0 * parity["mxnet"]["top1"],
            "onnxruntime_top1_percent": 100.0 * parity["onnxruntime"]["top1"],
            "onnxruntime_top5_percent": 100.0 * parity["onnxruntime"]["top5"],
            "same_prediction_fraction": parity["same_prediction_fraction"],
            "max_abs_logit_difference": parity["max_abs_logit_difference"],
        }
        for parity in parities
    ]
    table = pd.DataFrame(rows, columns=[name for name, _, _ in ONNX_COLUMNS])
    return table.sort_values("run", ignore_index=True)


def _csv_columns(markdown_columns):
    """A table's CSV columns: the GPU count, its Markdown columns, the reference hardware."""
    names = [name for name, _, _ in markdown_columns if name != "gpus"]
    return ["gpus", *names, "reference_hardware"]


def _hardware_where(reference_values, hardware=REFERENCE_HARDWARE):
    return reference_values.notna().map({True: hardware, False: ""})


def epoch_metrics(runs):
    """Per-epoch metrics of all runs in one long table, accuracies in percent, with the
    legend label of each run's family of replicas (its name, dtype, GPUs, the setup when
    not the reference's, and the number of seeds when more than one)."""
    labels = {}
    for family, reports in families([run["report"] for run in runs]):
        first = reports[0]
        label = f"{family} ({first['dtype']}, {device_label(first['gpus'])}"
        label += setup_suffix(network_name(first["network"]), first["pipeline"]["image_size"])
        label += f", {len(reports)} seeds" if len(reports) > 1 else ""
        labels.update({report["run"]: label + ")" for report in reports})
    rows = []
    for run in runs:
        name = run["report"]["run"]
        for epoch in run["epochs"]:
            rows.append({"run": name, "label": labels[name], **epoch})
    table = pd.DataFrame(rows, columns=["run", "label", *EPOCH_COLUMNS])
    for name in EPOCH_COLUMNS:
        table[name] = pd.to_numeric(table[name], errors="coerce")
    table["train_top1"] *= 100.0
    table["val_top1"] *= 100.0
    return table


def write_csv(path, table):
    with atomic_open(path) as handle:
        table.to_csv(handle, index=False, float_format="%.7g")
