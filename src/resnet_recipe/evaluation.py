"""Scoring: a checkpoint's loss, top-1 and top-5 over exactly the validation images, with
its images/s and per-batch latency, like the original recipe's SCORE scripts.

    score_run(path, run_dir=..., ...)           the final (or a chosen) epoch of a training run
    score_checkpoint(path, prefix=, epoch=, ...) any model-symbol.json + model-NNNN.params

Accuracy comes from training.evaluate (the padding of the last batch is never counted) on
one device through the validation pipeline. Each batch is timed from asking the pipeline
for it to its output being ready on the device (throughput.TimedBatches), after one untimed
forward that builds the graph; images/s is the validation images over the wall time of the
whole pass, loss and accuracy bookkeeping included.
"""

import logging
import os
import re
import time

import mxnet as mx

from resnet_recipe import devices, network, pipelines, results, throughput, training

log = logging.getLogger(__name__)

CHECKPOINT_PARAMS = re.compile(r"^model-(\d{4,})\.params$")
MODEL_PREFIX = "model"


def checkpoint_epochs(run_dir):
    """The NNNN of every model-NNNN.params in a run folder, in order."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir}: training run folder not found") from None
    epochs = sorted(int(m.group(1)) for m in map(CHECKPOINT_PARAMS.match, names) if m)
    if not epochs:
        raise FileNotFoundError(f"{run_dir}: no {MODEL_PREFIX}-NNNN.params checkpoint")
    return epochs


def chosen_epoch(run_dir, epoch):
    """`epoch` (the config's score.epoch) if the run folder has its checkpoint; None: the
    final one. A training run's folder holds its final epoch's model."""
    epochs = checkpoint_epochs(run_dir)
    if epoch is None:
        return epochs[-1]
    if epoch not in epochs:
        raise FileNotFoundError(
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
    """Score a training run into result_path: its checkpoint of epoch score_settings["epoch"]
    (None: the final one), in the run's dtype, on one GPU when it trained on GPUs, else on
    the CPU, in batches of score_settings["batch_size"]."""
    report = read_run_report(run_dir)
    epoch = chosen_epoch(run_dir, score_settings["epoch"])
    return score_checkpoint(
        result_path,
        prefix=os.path.join(run_dir, MODEL_PREFIX),
        epoch=epoch,
        val_rec=val_rec,
        val_idx=val_idx,
        dtype=report["dtype"],
        gpus=min(report["gpus"], 1),
        batch_size=score_settings["batch_size"],
        pipeline_settings=pipeline_settings,
        lock_dir=lock_dir,
        run=run,
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
    clock=time.perf_counter,
):
    """Score checkpoint `prefix`-symbol.json + `prefix`-NNNN.params (NNNN = epoch) on the
    validation records in `dtype` on one device (gpus 1, or 0 for the CPU); write the
    result (see the module docstring) to result_path and return it."""
    what = f"scoring {prefix} epoch {epoch}"
    for path in network.checkpoint_paths(prefix, epoch):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: {path} not found")
    if gpus not in (0, 1):
        raise ValueError(f"{what}: scoring runs on 1 GPU or on the CPU (gpus 0), not {gpus}")
    images = pipelines.count_records(val_rec, val_idx)
    with devices.acquire_gpus(gpus, lock_dir):
        contexts = devices.contexts(gpus, 1)
        throughput.check_dtype(dtype, contexts, what)
        net = network.load_for_inference(prefix, epoch, contexts, dtype)
        net.hybridize(static_alloc=True, static_shape=True)
        size = pipeline_settings["image_size"]
        # Untimed: builds the graph and lets cuDNN choose its algorithms; tells the classes.
        warmup = mx.nd.zeros((batch_size, 3, size, size), ctx=contexts[0], dtype=dtype)
        output = net(warmup)
        output.wait_to_read()
        classes = output.shape[1]
        batches = pipelines.val_batches(
            val_rec, val_idx, contexts, batch_size, pipeline_settings, dtype, num_classes=classes
        )
        log.info(
            "%s: %d validation images in %d batches of %d on %s, %s",
            what,
            images,
            len(batches),
            batch_size,
            contexts[0],
            dtype,
        )
        timed = throughput.TimedBatches(batches, net, clock)
        started = clock()
        metrics = training.evaluate(timed.forward, timed, classes)
        seconds = clock() - started
    result = {
        "run": run,
        "checkpoint": {"prefix": prefix, "epoch": epoch},
        "dtype": dtype,
        "device": str(contexts[0]),
        "images": images,
        "batch_size": batch_size,
        "classes": classes,
        "top1": metrics["top1"],
        "top5": metrics[f"top{training.TOP_K}"],
        "loss": metrics["loss"],
        "images_per_s": images / seconds,
        "latency_ms": throughput.latency_summary(timed.seconds),
    }
    made_with = {
        "run": run,
        "epoch": epoch,
        "dtype": dtype,
        "gpus": gpus,
        "batch_size": batch_size,
        "pipeline": pipeline_settings,
    }
    result = results.write(result_path, results.SCORE, result, made_with)
    log.info(
        "%s: top-1 %.4f, top-5 %.4f, loss %.4f, %.1f images/s, latency mean %.2f ms",
        what,
        result["top1"],
        result["top5"],
        result["loss"],
        result["images_per_s"],
        result["latency_ms"]["mean"],
    )
    return result
