"""Evaluation: loss, top-1 and top-5 over exactly the validation images, for the training
loop's per-epoch validation and for scoring a checkpoint named by prefix and epoch, like
the original recipe's SCORE scripts (examples/SCORE_FP16.sh L19 at a8e1d1cd), with its
images/s and per-batch latency (latency percentiles are not in the original).

    evaluate(net, val_batches, classes)         loss, top1, top5 (padding never counted)
    score_run(path, run_dir=..., ...)           the final (or a chosen) epoch of a training run
    score_checkpoint(path, prefix=, epoch=, ...) any model-symbol.json + model-NNNN.params

Each score's result JSON has its DLLogger log beside it (results/score/{run}.json ->
{run}.dllogger.json, files/dllogger_log.py).

Scoring runs evaluate() on one device through the validation pipeline. Each batch is
timed from asking the pipeline for it to its output being ready on the device
(timing.TimedBatches), after one untimed forward that builds the graph; images/s is the
validation images over the wall time of the whole pass, loss and accuracy bookkeeping
included.
"""

import logging
import os
import re
import time

import mxnet as mx

from resnet_recipe.data import pipelines
from resnet_recipe.data.input_layout import input_shape
from resnet_recipe.files import dllogger_log
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network, precision, recipe
from resnet_recipe.scoring import timing
from resnet_recipe.workflow_support import devices, results
from resnet_recipe.workflow_support.settings import Network

log = logging.getLogger(__name__)

CHECKPOINT_PARAMS = re.compile(r"^model-(\d{4,})\.params$")
MODEL_PREFIX = "model"
# Accuracy is reported as top-1 and top-TOP_K (the original recipe's top-5).
TOP_K = 5


def checkpoint_epochs(run_dir):
    """The NNNN of every model-NNNN.params in a run folder, in order."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        raise UserError(f"{run_dir}: training run folder not found") from None
    epochs = sorted(int(m.group(1)) for m in map(CHECKPOINT_PARAMS.match, names) if m)
    if not epochs:
        raise UserError(f"{run_dir}: no {MODEL_PREFIX}-NNNN.params checkpoint")
    return epochs


def chosen_epoch(run_dir, epoch):
    """`epoch` (the config's score.epoch) if the run folder has its checkpoint; None: the
    final one. A training run's folder holds its final epoch's model."""
    epochs = checkpoint_epochs(run_dir)
    if epoch is None:
        return epochs[-1]
    if epoch not in epochs:
        raise UserError(
            f"score.epoch is {epoch}, but {run_dir} holds the checkpoints of epochs {epochs}"
        )
    return epoch


def read_run_report(run_dir):
    return results.read(os.path.join(run_dir, "report.json"), results.RUN_REPORT)


def score_run(
    result_path,
    *,
    run_dir,
    val_rec,
    val_idx,
    score_settings,
    pipeline_settings,
    lock_dir,
    run,
):
    """Score a training run into result_path: its checkpoint of epoch score_settings.epoch
    (None: the final one), in the run's dtype, on one GPU when it trained on GPUs, else on
    the CPU, in batches of score_settings.batch_size for the run's dtype (score_settings:
    settings.Score; pipeline_settings: settings.InputPipeline)."""
    report = read_run_report(run_dir)
    epoch = chosen_epoch(run_dir, score_settings.epoch)
    # Scored in the layout it trained in, as the original SCORE_FP16 built its NHWC network.
    network_settings = Network.from_config(report["network"], f"{run_dir}/report.json network")
    return score_checkpoint(
        result_path,
        prefix=os.path.join(run_dir, MODEL_PREFIX),
        epoch=epoch,
        val_rec=val_rec,
        val_idx=val_idx,
        dtype=report["dtype"],
        gpus=min(report["gpus"], 1),
        batch_size=score_settings.batch_size_of(report["dtype"]),
        pipeline_settings=pipeline_settings,
        lock_dir=lock_dir,
        run=run,
        network_settings=network_settings,
    )


def score_checkpoint(
    result_path,
    *,
    prefix,
    epoch,
    val_rec,
    val_idx,
    dtype,
    gpus,
    batch_size,
    pipeline_settings,
    lock_dir,
    run,
    network_settings=None,
    clock=time.perf_counter,
):
    """Score checkpoint `prefix`-symbol.json + `prefix`-NNNN.params (NNNN = epoch) on the
    validation records in `dtype` on one device (gpus 1, or 0 for the CPU); write the
    result (see the module docstring) to result_path and return it. network_settings
    (settings.Network): score that network in its layout for `dtype` with the checkpoint's
    weights; None: the checkpoint's own graph, NCHW."""
    what = f"scoring {prefix} epoch {epoch}"
    _check_scoring(what, prefix, epoch, gpus)
    images = pipelines.count_records(val_rec, val_idx)
    with devices.acquire_gpus(gpus, lock_dir):
        contexts = devices.contexts(gpus, 1)
        precision.require_dtype_supported(dtype, contexts, what)
        layout = "NCHW" if network_settings is None else network_settings.layout_for(dtype)
        net = network.load_for_inference(prefix, epoch, contexts, dtype, network_settings)
        batches, classes = _scoring_batches(
            net, (val_rec, val_idx), contexts, dtype, layout, batch_size, pipeline_settings
        )
        log.info(
            "%s: %d validation images in %d batches of %d on %s, %s, %s",
            *(what, images, len(batches), batch_size, contexts[0], dtype, layout),
        )
        metrics, seconds, latencies = timed_evaluation(net, batches, classes, clock)
    result = {
        "run": run,
        "checkpoint": {"prefix": prefix, "epoch": epoch},
        "dtype": dtype,
        "layout": layout,
        "device": str(contexts[0]),
        "images": images,
        "batch_size": batch_size,
        "classes": classes,
        **metrics,  # loss, top1, top5
        "images_per_s": images / seconds,
        "latency_ms": timing.latency_summary(latencies),
    }
    made_with = dict(run=run, epoch=epoch, dtype=dtype, gpus=gpus, batch_size=batch_size)
    made_with["pipeline"] = pipeline_settings.to_config()
    result = write_score(result_path, result, made_with)
    log.info(
        "%s: top-1 %.4f, top-5 %.4f, loss %.4f, %.1f images/s, latency mean %.2f ms",
        what,
        *(result[key] for key in ("top1", "top5", "loss", "images_per_s")),
        result["latency_ms"]["mean"],
    )
    return result


def write_score(path, result, made_with):
    """The score's result file, and its DLLogger log beside it."""
    result = results.write(path, results.SCORE, result, made_with)
    dllogger_log.write_beside(path, dllogger_entries(result))
    return result


def dllogger_entries(result):
    """The DLLogger log of a score, as the recipe's val mode logs one pass: its epoch
    (step [0]) and the summary (step []), here the same. val.ips is the batch over the
    mean waited latency, as the recipe's val.ips divides the batch by its mean batch time."""
    data = {
        "val.accuracy": result["top1"],
        "val.top_k_accuracy_5": result[f"top{TOP_K}"],
        "val.ips": result["batch_size"] / (result["latency_ms"]["mean"] / 1000),
        **dllogger_log.validation_latencies(result["latency_ms"]),
    }
    return [([0], data), ([], data)]


def _scoring_batches(net, records, contexts, dtype, layout, batch_size, pipeline_settings):
    """(validation batches, classes) for scoring `net` on contexts[0], after an untimed
    forward (warm_up) that builds the graph and tells the number of classes."""
    shape = input_shape(layout, batch_size, pipeline_settings.image_size)
    classes = warm_up(net, shape, contexts[0], dtype)
    batches = pipelines.val_batches(
        *records,
        contexts,
        batch_per_device=batch_size,
        settings=pipeline_settings,
        dtype=dtype,
        layout=layout,
        num_classes=classes,
    )
    return batches, classes


def timed_evaluation(net, batches, classes, clock=time.perf_counter):
    """(evaluate()'s metrics, seconds of the whole pass, each batch's latency in seconds):
    each batch timed from asking the pipeline for it to its output being ready."""
    timed = timing.TimedBatches(batches, net, clock)
    started = clock()
    metrics = evaluate(timed.forward, timed, classes)
    return metrics, clock() - started, timed.seconds


def _check_scoring(what, prefix, epoch, gpus):
    for path in network.checkpoint_paths(prefix, epoch):
        if not os.path.isfile(path):
            raise UserError(f"{what}: {path} not found")
    if gpus not in (0, 1):
        raise UserError(f"{what}: scoring runs on 1 GPU or on the CPU (gpus 0), not {gpus}")


def warm_up(net, input_shape, context, dtype):
    """Hybridize `net` and run one untimed forward of `input_shape` that builds the graph
    and lets cuDNN choose its algorithms; return the network's number of classes."""
    net.hybridize(static_alloc=True, static_shape=True)
    output = net(mx.nd.zeros(input_shape, ctx=context, dtype=dtype))
    output.wait_to_read()
    return output.shape[1]


def top_k_hits(output, label, k):
    """Number of samples whose label is among the k highest outputs, as a 1-element
    NDArray on the output's device."""
    label = label.reshape((-1,)).astype("float32")
    if k == 1:
        return (output.argmax(axis=1).astype("float32") == label).sum()
    top = output.topk(axis=1, k=k).astype("float32")
    return (top == label.expand_dims(axis=1)).sum()


def evaluate(net, val_data, classes):
    """Loss, top-1 and top-k accuracy over exactly the validation images: the padding
    that fills the last batch of each device is cut off before anything is counted."""
    k = min(TOP_K, classes)
    loss_fn = recipe.CrossEntropy(classes)
    contexts = val_data.contexts
    totals = {name: [mx.nd.zeros(1, ctx=ctx) for ctx in contexts] for name in ("loss", "1", "k")}
    images = 0
    for device_batches in val_data:
        for i, batch in enumerate(device_batches):
            if batch.valid == 0:
                continue
            output = net(batch.data)
            label = batch.label
            if batch.valid < output.shape[0]:
                output, label = output[: batch.valid], label[: batch.valid]
            totals["loss"][i] += loss_fn(output, label).sum()
            totals["1"][i] += top_k_hits(output, label, 1)
            totals["k"][i] += top_k_hits(output, label, k)
            images += batch.valid
    values = {name: sum(v.asscalar() for v in arrays) / images for name, arrays in totals.items()}
    return {"loss": values["loss"], "top1": values["1"], f"top{TOP_K}": values["k"]}
