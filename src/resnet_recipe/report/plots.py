"""The report's graphs (PNG): per-epoch curves of the training runs, training throughput
against GPU count and inference throughput and latency against batch size, with the
reference points of the same experiment. A graph with nothing to draw is a PNG that says
what is missing, and that sentence is also its note in report.md."""

import math

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from resnet_recipe.files.atomic_files import atomic_path
from resnet_recipe.report.experiment import (
    REFERENCE_LABEL,
    REFERENCE_SETUP,
    REFERENCE_SETUP_TEXT,
    device_label,
    same_experiment,
    setup_suffix,
)
from resnet_recipe.report.inputs import MXNET_ENGINE

DTYPE_COLORS = {"float16": "tab:blue", "float32": "tab:orange"}
# Color by dtype, marker by series, so that series of one dtype stay apart in the legend.
SERIES_MARKERS = "osD^vP*X"
FIGURE_SIZE = (10, 5.4)
# The legend entry of the band around a family's mean curve.
REPLICA_BAND = "band: lowest to highest seed (line: their mean)"
FIGURE_DPI = 110


def plot_graphs(metrics, tables, reference, outputs):
    """Every graph of the report, written to its path in `outputs` (a ReportOutputs), from
    the per-epoch metrics and the training and inference tables with their reference
    tables. Returns {output name: note for report.md, '' when there is none}."""
    return {
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
            tables["training"], reference["training"], outputs.training_scaling_png
        ),
        "inference_throughput_png": plot_inference(
            tables["inference"],
            reference["inference"],
            "throughput",
            outputs.inference_throughput_png,
        ),
        "inference_latency_png": plot_inference(
            tables["inference"], reference["inference"], "latency", outputs.inference_latency_png
        ),
    }


def _figure():
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    return figure, figure.add_subplot()


def _save(figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def nothing_to_draw(path, title, message):
    """Write a PNG that says in words what is missing, instead of empty axes, and return
    the message as the graph's note for report.md."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    figure.text(0.5, 0.62, title, ha="center", va="center", fontsize=16, weight="bold")
    figure.text(0.5, 0.45, message, ha="center", va="center", fontsize=12, wrap=True)
    _save(figure, path)
    return message


def plot_reference(axes, x, y, dtype, series):
    """Reference points as hollow markers on a dotted line in the dtype's color, under the
    measured points they may coincide with; the legend names `series` and the reference."""
    axes.plot(
        x,
        y,
        color=DTYPE_COLORS[dtype],
        linestyle=":",
        marker="o",
        markerfacecolor="white",
        zorder=1.5,
        label=f"{series}: {REFERENCE_LABEL}",
    )


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


def _comparable_reference(measured, reference):
    """The reference rows of the dtypes that have a measured point of the reference's
    experiment, and the notes saying which dtypes' reference is left out for that."""
    comparable = set(measured.loc[same_experiment(measured, REFERENCE_SETUP), "dtype"])
    left_out = " or ".join(sorted(set(measured["dtype"]) - comparable))
    notes = [f"V100 reference not drawn: no {left_out} point is {REFERENCE_SETUP_TEXT} on GPUs."]
    return reference[reference["dtype"].isin(comparable)], notes if left_out else []


def plot_epoch_curves(metrics, column, ylabel, path):
    """One figure of `column` per epoch, all runs overlaid; a family of replicas (runs
    that differ only in seed, one label) as the mean over its seeds in a band from their
    minimum to their maximum. Returns a note for report.md when nothing could be drawn,
    else ''."""
    title = f"{ylabel[0].upper()}{ylabel[1:].split(' (')[0]} per epoch"
    values = metrics.dropna(subset=[column])
    if values.empty:
        if metrics.empty:
            return nothing_to_draw(path, title, "No training runs were given.")
        return nothing_to_draw(path, title, f"No run has a {column} value in its metrics.jsonl.")
    figure, axes = _figure()
    for label, family in values.groupby("label", sort=True):
        per_epoch = family.groupby("epoch")[column]
        mean = per_epoch.mean()
        (line,) = axes.plot(mean.index, mean, marker="o", markersize=3, label=label)
        if family["run"].nunique() > 1:
            # Every seed's curve lies within the band from the lowest to the highest.
            low, high = per_epoch.min(), per_epoch.max()
            axes.fill_between(mean.index, low, high, color=line.get_color(), alpha=0.25)
    if values.groupby("label")["run"].nunique().max() > 1:
        axes.fill_between([], [], [], color="grey", alpha=0.25, label=REPLICA_BAND)
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


def plot_training_scaling(training, reference, path):
    """Images/s against the GPUs in all (nodes x GPUs per node) per dtype, batch per GPU,
    node count and setup, with ideal linear scaling from each 1-GPU point and the
    reference points of the dtypes measured in the reference's experiment. CPU points
    stand apart at the left: a line from the CPU to one GPU would mean nothing. Returns a
    note for report.md, or ''."""
    title = "Training throughput against GPU count"
    if training.empty:
        return nothing_to_draw(path, title, "No training benchmark results were given.")
    training = training.assign(all_gpus=training["gpus"] * training["nodes"])
    reference, notes = _comparable_reference(training, reference)
    positions = _gpu_positions([*training["all_gpus"], *reference["gpus"]])
    figure, axes = _figure()
    notes += _plot_scaling_series(axes, training, positions)
    for (dtype, batch), points in reference.groupby(["dtype", "batch_per_device"]):
        points = points.sort_values("gpus")
        x = [positions[int(g)] for g in points["gpus"]]
        plot_reference(axes, x, points["img_per_s"], dtype, f"{dtype}, batch {batch} per GPU")
    axes.set_yscale("log")
    _log_axis(axes.yaxis, [*training["images_per_s"], *reference["img_per_s"]])
    axes.set_xticks(
        list(positions.values()), labels=[device_label(g) if g == 0 else str(g) for g in positions]
    )
    axes.set_xlim(min(positions.values()) - 0.3, max(positions.values()) + 0.3)
    x_label = "GPUs in all: nodes x GPUs per node (log2 scale)"
    _finish(axes, title, x_label, "training throughput (images/s, log scale)", notes)
    _save(figure, path)
    return " ".join(notes)


def _plot_scaling_series(axes, training, positions):
    """The measured series of the scaling graph (one per node count), each GPU series with
    its dashed ideal line from the 1-GPU point of its dtype and batch; returns notes on
    the series that have no 1-GPU point."""
    notes = []
    gpu_counts = [g for g in positions if g >= 1]
    ideal_drawn = set()  # (dtype, batch, setup) whose ideal line is drawn
    series = training.assign(on_cpu=training["gpus"] == 0)
    keys = ["dtype", "batch_per_device", "on_cpu", "nodes", *REFERENCE_SETUP]
    for number, (key, points) in enumerate(series.groupby(keys)):
        dtype, batch, on_cpu, nodes, network, image_size = key
        points = points.sort_values("all_gpus")
        style = {"color": DTYPE_COLORS[dtype], "marker": SERIES_MARKERS[number % 8]}
        where = ", CPU" if on_cpu else " per GPU"
        where += f", {nodes} nodes" if nodes > 1 else ""
        axes.plot(
            [positions[int(g)] for g in points["all_gpus"]],
            points["images_per_s"],
            label=f"{dtype}, batch {batch}{where}{setup_suffix(network, image_size)}",
            **style,
        )
        line = (dtype, batch, network, image_size)
        if on_cpu or line in ideal_drawn:
            continue
        one_gpu = series.loc[
            (series["all_gpus"] == 1)
            & (series["dtype"] == dtype)
            & (series["batch_per_device"] == batch)
            & (series["network"] == network)
            & (series["image_size"] == image_size),
            "images_per_s",
        ]
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
            ideal_drawn.add(line)
    if ideal_drawn:
        axes.plot(
            [], [], color="grey", linestyle="--", linewidth=1, label="ideal linear from 1 GPU"
        )
    return notes


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
    against batch size on a log2 axis, per dtype, device, setup and engine. Returns a note for
    report.md, or ''."""
    title = f"Inference {quantity} against batch size"
    if inference.empty:
        return nothing_to_draw(path, title, "No inference benchmark results were given.")
    throughput = quantity == "throughput"
    drawn = (
        ["images_per_s"] if throughput else ["latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
    )
    # The reference has images/s only.
    reference, notes = (
        _comparable_reference(inference, reference) if throughput else (reference[:0], [])
    )
    figure, axes = _figure()
    _plot_inference_series(axes, inference, throughput)
    for dtype, points in reference.groupby("dtype"):
        points = points.sort_values("batch_size")
        plot_reference(axes, points["batch_size"], points["img_per_s"], dtype, f"{dtype}, 1 V100")
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


def _plot_inference_series(axes, inference, throughput):
    """The measured series of an inference graph: images/s, or the mean latency with a
    bar from p50 to p99 at each batch size."""
    keys = ["dtype", "device", *REFERENCE_SETUP, "engine"]
    for number, ((dtype, device, network, image_size, engine), points) in enumerate(
        inference.groupby(keys)
    ):
        points = points.sort_values("batch_size")
        batch = points["batch_size"].astype(float)
        color = DTYPE_COLORS[dtype]
        series = f"{dtype}, {device}{setup_suffix(network, image_size)}"
        series += "" if engine == MXNET_ENGINE else f", {engine}"
        marker = SERIES_MARKERS[number % 8]
        if throughput:
            axes.plot(batch, points["images_per_s"], color=color, marker=marker, label=series)
            continue
        mean = points["latency_mean_ms"]
        axes.plot(batch, mean, color=color, marker=marker, label=f"{series}: mean")
        # A translucent bar per batch size rather than a shaded band: it also shows when
        # there is only one batch size.
        axes.vlines(
            batch,
            points["latency_p50_ms"].astype(float),
            points["latency_p99_ms"].astype(float),
            color=color,
            linewidth=8,
            alpha=0.3,
            label=f"{series}: p50 to p99",
        )
