"""The training loop: data-parallel SGD over N devices in one process, validated and
checkpointed every epoch, resumable after a crash, exported in MXNet's checkpoint format.

    train(...) -> out_dir/model-symbol.json, model-NNNN.params, metrics.jsonl, report.json

The per-epoch resumable state lives under `state_root` (see checkpoints.py), in a folder
named after a digest of everything that shapes the result; the outputs in `out_dir` appear
at the very end, all at once.
"""

import hashlib
import json
import logging
import os
import time

import mxnet as mx
from mxnet import autograd

from resnet_recipe import (
    checkpoints,
    devices,
    distributed,
    evaluation,
    network,
    pipelines,
    precision,
    recipe,
    results,
)
from resnet_recipe.atomic_files import atomic_directory
from resnet_recipe.listing import read_classes
from resnet_recipe.progress import format_duration
from resnet_recipe.settings import PRESENTATION_SETTINGS, Distributed

log = logging.getLogger(__name__)


def train(
    *,
    train_rec,
    train_idx,
    val_rec,
    val_idx,
    classes_tsv,
    out_dir,
    state_root,
    settings,
    network_settings,
    pipeline_settings,
    lock_dir,
    run="run",
    distributed_settings=None,
):
    """Train one run and write its model, metrics.jsonl and report.json into out_dir.

    settings: the run (settings.TrainingRun); network_settings: settings.Network;
    pipeline_settings: settings.InputPipeline. Resumes from the newest complete epoch under
    state_root that was made with the same settings and data. A run of settings.nodes
    above 1 starts that many workers (distributed.py, distributed_settings: a
    settings.Distributed) which come back here; the first of them writes the state and
    the outputs.
    """
    distributed_settings = distributed_settings or Distributed()
    if settings.nodes > 1 and not distributed.is_worker():
        # locals() here are exactly train()'s arguments.
        job = distributed.job_of(**locals())
        distributed.launch_training(job, settings.nodes, distributed_settings)
        return out_dir
    classes = len(read_classes(classes_tsv))
    digest = checkpoints.settings_digest(
        {k: v for k, v in settings.to_config().items() if k not in PRESENTATION_SETTINGS},
        network_settings.to_config(),
        pipeline_settings.to_config(),
        record_identity(train_idx),
        record_identity(val_idx),
        classes,
    )
    state_dir = checkpoints.run_state_dir(state_root, digest)
    train_records = pipelines.count_records(train_rec, train_idx)
    with devices.acquire_gpus(settings.gpus, lock_dir):
        contexts = devices.contexts(settings.gpus, settings.cpu_contexts)
        precision.require_dtype_supported(settings.dtype, contexts)
        membership = distributed.join(settings.gpus)
        if membership.workers != settings.nodes:
            raise RuntimeError(
                f"run {run} has nodes: {settings.nodes} but the kvstore has "
                f"{membership.workers} workers"
            )
        log.info(
            "run %s: %d classes, %d training images, contexts %s, settings %s, network %s",
            *(run, classes, train_records, contexts),
            json.dumps(settings.to_config(), sort_keys=True),
            json.dumps(network_settings.to_config(), sort_keys=True),
        )
        loop = TrainingLoop(
            contexts, classes, train_records, settings, network_settings, membership
        )
        # Every worker must resume after the same epoch, before any of them touches the
        # kvstore's parameters (loading the optimizer state does).
        membership.require_same("the epoch to resume after", checkpoints.latest_epoch(state_dir))
        loop.restore(checkpoints.load_latest(state_dir, loop.net, loop.trainer, contexts))
        if loop.epoch < settings.epochs:
            train_data, val_data = open_data(
                settings,
                pipeline_settings,
                contexts,
                classes=classes,
                first_epoch=loop.epoch,
                train=(train_rec, train_idx),
                val=(val_rec, val_idx),
                shards=distributed.shard_plan(membership, len(contexts)),
                iterations=loop.iterations_per_epoch,
            )
        while loop.epoch < settings.epochs:
            loop.run_epoch(train_data, val_data)
            with membership.statistics_of_all_workers(loop.net):
                if membership.writes_outputs:
                    checkpoints.save_epoch(
                        state_dir, loop.epoch, loop.net, loop.trainer, loop.state()
                    )
        with membership.statistics_of_all_workers(loop.net):
            if membership.writes_outputs:
                write_outputs(loop, out_dir, run, network_settings, pipeline_settings)
    return out_dir


def open_data(
    run, pipeline_settings, contexts, *, classes, first_epoch, train, val, shards, iterations
):
    """Training and validation batches of `run` (a settings.TrainingRun) from the (rec, idx)
    pairs `train` and `val`. The training order is seeded by the run's seed and the epoch
    it starts after, so a restarted run draws a fresh, reproducible order. `shards`: this
    worker's (first global shard, shards in all); `iterations` per training epoch, the
    same on every worker whatever the size of its shard."""
    first_shard, total_shards = shards
    common = dict(
        batch_per_device=run.batch_per_device,
        settings=pipeline_settings,
        dtype=run.dtype,
        num_classes=classes,
        first_shard=first_shard,
        total_shards=total_shards,
    )
    train_data = pipelines.train_batches(
        *train, contexts, seed=run.seed * 1000 + first_epoch, iterations=iterations, **common
    )
    return train_data, pipelines.val_batches(*val, contexts, **common)


def record_identity(idx_path):
    """What identifies a packed split cheaply: a digest of its index (record offsets)."""
    with open(idx_path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class TrainingLoop:
    """Network, trainer, loss scaler and metrics of one run (settings: a
    settings.TrainingRun), advanced an epoch at a time."""

    def __init__(
        self, contexts, classes, train_records, settings, network_settings, membership=None
    ):
        self.contexts = contexts
        self.classes = classes
        self.settings = settings
        self.dtype = settings.dtype
        self.membership = membership or distributed.Membership()
        # Images of one iteration on this worker's devices, and over all workers.
        self.local_batch = settings.batch_per_device * len(contexts)
        self.global_batch = self.local_batch * self.membership.workers
        self.iterations_per_epoch = train_records // self.global_batch
        if self.iterations_per_epoch < 1:
            raise ValueError(
                f"{train_records} training images are fewer than one global batch of "
                f"{self.global_batch} ({settings.batch_per_device} per device x "
                f"{len(contexts)} devices x {self.membership.workers} workers)"
            )
        self.epoch = 0
        self.history = []  # one metrics dict per finished epoch
        self.elapsed = 0.0  # seconds spent training this run, over every attempt

        mx.random.seed(settings.seed)
        self.net = network.build(network_settings, classes, contexts, self.dtype)
        self.loss = recipe.CrossEntropy(classes, settings.label_smoothing)
        self.loss.hybridize(static_alloc=True, static_shape=True)
        self.loss_scaler = precision.make_loss_scaler(settings.loss_scale, self.dtype)
        self.trainer = recipe.make_trainer(
            self.net.collect_params(),
            settings,
            self.global_batch,
            self.iterations_per_epoch,
            self.dtype,
            kvstore=self.membership.kvstore,
        )

    def restore(self, state):
        """Continue after the epoch saved in `state` (None: start afresh)."""
        if state is None:
            return
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.elapsed = state["elapsed"]
        self.loss_scaler.load_state_dict(state["loss_scaler"])

    def state(self):
        """What checkpoints.save_epoch stores beside parameters and optimizer state."""
        return {
            "history": self.history,
            "elapsed": self.elapsed,
            "loss_scaler": self.loss_scaler.state_dict(),
        }

    def run_epoch(self, train_data, val_data):
        """Train one epoch, validate, and append the epoch's metrics to history."""
        started = time.monotonic()
        self.epoch += 1
        train_metrics = self.train_one_epoch(train_data)
        train_seconds = time.monotonic() - started
        val_metrics = self.validate(val_data)
        epoch_seconds = time.monotonic() - started
        self.elapsed += epoch_seconds
        metrics = {
            "epoch": self.epoch,
            **train_metrics,
            **{f"val_{name}": value for name, value in val_metrics.items()},
            "images_per_s": self.iterations_per_epoch * self.global_batch / train_seconds,
            "epoch_seconds": epoch_seconds,
        }
        self.history.append(metrics)
        log.info(
            "epoch %d/%d done: train loss %.4f top-1 %.4f | val loss %.4f top-1 %.4f top-5 "
            "%.4f | %.1f img/s | %s this epoch, %s in all",
            self.epoch,
            self.settings.epochs,
            metrics["train_loss"],
            metrics["train_top1"],
            metrics["val_loss"],
            metrics["val_top1"],
            metrics["val_top5"],
            metrics["images_per_s"],
            format_duration(epoch_seconds),
            format_duration(self.elapsed),
        )

    def validate(self, val_data):
        """evaluate() over this worker's validation shard, averaged over all workers'
        images."""
        if self.membership.workers == 1:
            return evaluation.evaluate(self.net, val_data, self.classes)
        counted = distributed.CountedBatches(val_data)
        metrics = evaluation.evaluate(self.net, counted, self.classes)
        names = sorted(metrics)
        sums = self.membership.sum_over_workers(
            "validation", [counted.images, *(metrics[name] * counted.images for name in names)]
        )
        return {name: total / sums[0] for name, total in zip(names, sums[1:], strict=True)}

    def train_one_epoch(self, train_data):
        """SGD over one epoch. Metrics accumulate on the devices and reach the host only
        at log lines and at the end, so the loop never waits for the GPU otherwise."""
        loss_sum = [mx.nd.zeros(1, ctx=ctx) for ctx in self.contexts]
        correct = [mx.nd.zeros(1, ctx=ctx) for ctx in self.contexts]
        first_iteration = (self.epoch - 1) * self.iterations_per_epoch
        interval = self.settings.log_interval
        started = last_log = time.monotonic()
        last_logged_batch = 0
        lr = None
        skipped_before = self.loss_scaler.skipped_steps
        for batch_index, device_batches in enumerate(train_data, 1):
            outputs, losses = self.step(device_batches, first_iteration + batch_index - 1)
            lr = self.trainer.learning_rate
            for i, (output, loss, batch) in enumerate(
                zip(outputs, losses, device_batches, strict=True)
            ):
                loss_sum[i] += loss.sum()
                correct[i] += evaluation.top_k_hits(output, batch.label, 1)
            if batch_index % interval == 0 or batch_index == self.iterations_per_epoch:
                now = time.monotonic()
                images = batch_index * self.local_batch  # this worker's loss so far
                seen_loss = sum(value.asscalar() for value in loss_sum) / images
                batches = batch_index - last_logged_batch
                rate = batches * self.global_batch / max(now - last_log, 1e-9)
                last_log, last_logged_batch = now, batch_index
                self.log_progress(batch_index, rate, seen_loss, lr, now - started)
        images = self.iterations_per_epoch * self.global_batch
        total_loss, total_correct = self.membership.sum_over_workers(
            "training",
            [sum(value.asscalar() for value in loss_sum), sum(v.asscalar() for v in correct)],
        )
        return {
            "train_loss": total_loss / images,
            "train_top1": total_correct / images,
            "lr": lr,
            "loss_scale": self.loss_scaler.scale,
            # Updates a dynamic loss scaler skipped for overflow (float16) this epoch.
            "skipped_steps": self.loss_scaler.skipped_steps - skipped_before,
        }

    def step(self, device_batches, iteration):
        """Forward and backward on every device, then one optimizer update at the learning
        rate of global `iteration`. Returns the per-device outputs and per-image losses,
        still being computed (nothing here waits for the devices)."""
        scale = self.loss_scaler.scale
        with autograd.record():
            outputs = [self.net(batch.data) for batch in device_batches]
            losses = [
                self.loss(output, batch.label)
                for output, batch in zip(outputs, device_batches, strict=True)
            ]
            scaled = [loss * scale for loss in losses] if scale != 1 else losses
        autograd.backward(scaled)
        recipe.update_parameters(self.trainer, iteration, self.global_batch, self.loss_scaler)
        return outputs, losses

    def log_progress(self, batch_index, rate, loss, lr, seconds):
        per_batch = seconds / batch_index
        left_in_epoch = (self.iterations_per_epoch - batch_index) * per_batch
        epochs_after = self.settings.epochs - self.epoch
        left_in_run = left_in_epoch + epochs_after * self.iterations_per_epoch * per_batch
        log.info(
            "epoch %d/%d batch %d/%d | %.1f img/s | loss %.4f | lr %.5g | ETA epoch %s, run %s",
            self.epoch,
            self.settings.epochs,
            batch_index,
            self.iterations_per_epoch,
            rate,
            loss,
            lr,
            format_duration(left_in_epoch),
            format_duration(left_in_run),
        )


def write_outputs(loop, out_dir, run, network_settings, pipeline_settings):
    """The run's declared outputs, all appearing at once: the model in MXNet's checkpoint
    format (float32 weights), metrics.jsonl (one line per epoch) and report.json."""
    final = loop.history[-1]
    report = {
        "run": run,
        "gpus": loop.settings.gpus,
        "nodes": loop.membership.workers,
        "devices": [str(ctx) for ctx in loop.contexts],
        "dtype": loop.dtype,
        "batch_per_device": loop.settings.batch_per_device,
        "global_batch": loop.global_batch,
        "epochs": loop.epoch,
        "classes": loop.classes,
        "val_top1": final["val_top1"],
        "val_top5": final[f"val_top{evaluation.TOP_K}"],
        "train_seconds": loop.elapsed,
        "images_per_s": sum(m["images_per_s"] for m in loop.history) / len(loop.history),
        "settings": loop.settings.to_config(),
        "network": network_settings.to_config(),
        "pipeline": pipeline_settings.to_config(),
        "machine": devices.describe_machine(),
    }
    with atomic_directory(out_dir) as folder:
        network.export_checkpoint(loop.net, os.path.join(folder, "model"), loop.epoch, loop.trainer)
        results.write_metrics(os.path.join(folder, "metrics.jsonl"), loop.history)
        results.write(os.path.join(folder, "report.json"), results.RUN_REPORT, report)
    log.info(
        "run %s: %d epochs, val top-1 %.4f, top-5 %.4f, %s of training; outputs in %s",
        run,
        loop.epoch,
        report["val_top1"],
        report["val_top5"],
        format_duration(loop.elapsed),
        out_dir,
    )
