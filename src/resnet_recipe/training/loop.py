"""The training loop: data-parallel SGD over N devices in one process, validated and
checkpointed every epoch, resumable after a crash, exported in MXNet's checkpoint format.

    train_here(job) -> out_dir/model-symbol.json, model-NNNN.params, metrics.jsonl,
                       dllogger.json, report.json

The per-epoch resumable state lives under `state_root` (see checkpoints.py), in a folder
named after a digest of everything that shapes the result; the outputs in `out_dir` appear
at the very end, all at once; the logs a user watches while it trains (DLLogger lines and
TensorBoard events) grow in the state folder (run_logs.py). model-NNNN.params is exported
every training.export_every epochs, as the original saved model-NNNN.params every epoch
(fit.py L97-101, L139 at a8e1d1cd); the exports wait in the state folder until the end
(checkpoints.py says why).

A run that diverges stops with TrainingDiverged, leaving the last good epoch's state and
no outputs: non-finite loss or gradients (no dynamic loss scale), or a dynamic loss scale
that keeps overflowing at its floor. The check reads the device only where the loop waits
for it anyway (log lines, the end of an epoch).
"""

import json
import logging
import math
import os
import time

import mxnet as mx
from mxnet import autograd

from resnet_recipe.data import pipelines
from resnet_recipe.data.listing import read_classes
from resnet_recipe.files.atomic_files import atomic_directory
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network, precision, recipe
from resnet_recipe.scoring import evaluation
from resnet_recipe.training import (
    attempts,
    checkpoints,
    distributed,
    epochs,
    interruption,
    slurm_job,
)
from resnet_recipe.training.epoch_progress import EpochProgress, skip_batches
from resnet_recipe.training.run_logs import RunLogs
from resnet_recipe.workflow_support import devices, results
from resnet_recipe.workflow_support.progress import format_duration

log = logging.getLogger(__name__)


def train_here(job):
    """Train one run (a TrainingJob) in this process and write its model, metrics.jsonl and
    report.json into job.out_dir. Resumes from the newest position under job.state_root
    that was made with the same settings and data. A stop signal ends it with RunStopped
    after the state of its position is written (interruption.py). In a worker of a run over
    several nodes (training.launcher), joins the others through the distributed kvstore."""
    started = time.time()
    settings, network_settings = job.settings, job.network_settings
    classes = len(read_classes(job.classes_tsv))
    digest = checkpoints.state_digest(
        settings, network_settings, job.pipeline_settings, (job.train_idx, job.val_idx), classes
    )
    state_dir = checkpoints.run_state_dir(job.state_root, digest)
    train_records = pipelines.count_records(job.train_rec, job.train_idx)
    with interruption.StopSignals() as signals, devices.acquire_gpus(settings.gpus, job.lock_dir):
        contexts = devices.contexts(settings.gpus, settings.cpu_contexts)
        precision.require_dtype_supported(settings.dtype, contexts)
        membership = distributed.join(settings)
        log.info(
            "run %s: %d classes, %d training images, contexts %s, OMP_NUM_THREADS=%s, "
            "settings %s, network %s",
            *(job.run, classes, train_records, contexts),
            os.environ.get("OMP_NUM_THREADS", "unset"),
            json.dumps(settings.to_config(), sort_keys=True),
            json.dumps(network_settings.to_config(), sort_keys=True),
        )
        loop = TrainingLoop(
            contexts, classes, train_records, settings, network_settings, job.run, membership
        )
        loop.positions = interruption.Positions(
            *(signals, settings.state_every_minutes, membership, settings.log_interval),
            stop_at=slurm_job.stop_time(settings.stop_before_job_end_minutes),
        )
        loop.save_position = lambda progress: epochs.save_state(loop, state_dir, progress)
        resumed_after = epochs.resume(loop, state_dir)
        if membership.writes_outputs:
            # The logs grow in the state folder from the start; a fresh run's first state
            # comes later.
            os.makedirs(state_dir, exist_ok=True)
            loop.attempt = attempts.AttemptLog(state_dir, resumed_after, started)
            loop.run_logs = RunLogs(state_dir, loop)
        try:
            epochs.train_epochs(loop, job, state_dir)
            # Every worker enters: the BN statistics of the export are averaged over all.
            with membership.statistics_of_all_workers(loop.net):
                if membership.writes_outputs:
                    write_outputs(loop, job, state_dir)
        except Exception as error:  # a stop (RunStopped) or a failure: this attempt's end
            if loop.attempt:
                loop.attempt.end(attempts.ended_how(error))
            raise
        finally:
            if loop.run_logs:
                loop.run_logs.close()
    return job.out_dir


class TrainingDiverged(UserError):
    """A run's loss or gradients stopped being finite (or a dynamic loss scale kept
    overflowing at its floor): continuing would only produce a model of NaN."""


class TrainingLoop:
    """Network, trainer, loss scaler and metrics of one run (settings: a
    settings.TrainingRun), advanced an epoch at a time."""

    # The DLLogger and TensorBoard logs: a run_logs.RunLogs that train_here gives the
    # first worker; None: the loop writes none.
    run_logs = None
    # This attempt's lines in the run's attempts file (attempts.AttemptLog), likewise.
    attempt = None

    def __init__(
        self,
        contexts,
        classes,
        train_records,
        settings,
        network_settings,
        run="run",
        membership=None,
    ):
        self.run = run
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
            raise UserError(
                f"{train_records} training images are fewer than one global batch of "
                f"{self.global_batch} ({settings.batch_per_device} per device x "
                f"{len(contexts)} devices x {self.membership.workers} workers)"
            )
        self.epoch = 0
        self.history = []  # one metrics dict per finished epoch
        self.elapsed = 0.0  # seconds spent training this run, over every attempt
        # Measured times the run's ETA adds up: the last validation, the gap between two
        # epochs (saving the state) and when the last epoch ended (None: not measured yet).
        self.val_seconds = None
        self.between_epochs = 0.0
        self.last_epoch_end = None
        # Seconds of a batch after an epoch's first log interval, as last measured, and
        # what an epoch's training took beyond its batches at that rate (starting the
        # epoch's input) as last measured at an epoch's end.
        self.steady_per_batch = None
        self.epoch_start_seconds = 0.0

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
        # When and how to write the state of a position inside an epoch (train_here sets
        # both; without them the loop never stops or saves inside an epoch).
        self.positions = None  # an interruption.Positions
        self.save_position = None  # called with the EpochProgress to save
        # The progress of a restored position inside the next epoch (restore).
        self.resumed = None

    def restore(self, state):
        """Continue after the epoch saved in `state` (None: start afresh)."""
        if state is None:
            return
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.elapsed = state["elapsed"]
        self.loss_scaler.load_state_dict(state["loss_scaler"])
        partial = state.get("partial_epoch")
        if partial:
            self.resumed = EpochProgress.from_state(partial, self.contexts, self.membership)

    def state(self):
        """What checkpoints.save_position stores beside parameters and optimizer state."""
        return {
            "history": self.history,
            "elapsed": self.elapsed,
            "loss_scaler": self.loss_scaler.state_dict(),
        }

    def run_epoch(self, train_data, val_data):
        """Train one epoch (the rest of it after a resumed position), validate, and append
        the epoch's metrics to history."""
        # Seconds of this epoch in the attempts before a resumed position.
        before = self.resumed.seconds if self.resumed else 0.0
        started = time.monotonic() - before
        # An attempt's first epoch also pays for its first MXNet operations (and a resumed
        # one for running through its batches up to the position): the start of an epoch
        # is measured on the later ones only.
        follows_an_epoch = self.last_epoch_end is not None
        if follows_an_epoch:
            self.between_epochs = time.monotonic() - self.last_epoch_end
        self.epoch += 1
        train_metrics = self.train_one_epoch(train_data, started)
        train_seconds = time.monotonic() - started
        if follows_an_epoch and self.steady_per_batch is not None:
            steady_seconds = self.iterations_per_epoch * self.steady_per_batch
            self.epoch_start_seconds = max(train_seconds - steady_seconds, 0.0)
        val_metrics, val_images, val_batches = self.validate(val_data)
        # Before the epoch's state is saved; its time counts with validation's in the ETA.
        loss = train_metrics["train_loss"]
        self.check_finite(loss, 0, self.iterations_per_epoch, train_metrics["lr"], weights=True)
        self.last_epoch_end = time.monotonic()
        epoch_seconds = self.last_epoch_end - started
        self.val_seconds = epoch_seconds - train_seconds
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
        if self.run_logs:
            # Validation's rate, and the mean seconds of this worker's batches (input
            # included).
            validation = (val_images / self.val_seconds, self.val_seconds / val_batches)
            self.run_logs.epoch(metrics, *validation)

    def validate(self, val_data):
        """(evaluate()'s metrics over this worker's validation shard averaged over all
        workers' images, the images of all workers, this worker's batches)."""
        counted = distributed.CountedBatches(val_data)
        metrics = evaluation.evaluate(self.net, counted, self.classes)
        if self.membership.workers == 1:
            return metrics, counted.images, len(counted)
        names = sorted(metrics)
        sums = self.membership.sum_over_workers(
            "validation", [counted.images, *(metrics[name] * counted.images for name in names)]
        )
        averages = {name: total / sums[0] for name, total in zip(names, sums[1:], strict=True)}
        return averages, sums[0], len(counted)

    def train_one_epoch(self, train_data, started):
        """SGD over one epoch, or over its rest after a resumed position (whose batches the
        epoch's pipeline runs through first without training). `started`: the monotonic
        time of the epoch's start, less its seconds in earlier attempts; the first interval's
        rate counts all of this attempt's time before its first log line. Metrics accumulate
        on the devices and reach the host only at log lines, saved positions and the end,
        where the loss and (before a save) the weights are checked for inf and NaN, so the
        loop never waits for the GPU otherwise."""
        progress = self.resumed or EpochProgress(self.contexts, self.loss_scaler.skipped_steps)
        self.resumed = None
        first_iteration = (self.epoch - 1) * self.iterations_per_epoch
        interval = self.settings.log_interval
        last_log = started + progress.seconds  # when this attempt began the epoch
        last_logged_batch = progress.batches
        first_log = None  # (time, batch) of the epoch's first log line
        lr = None
        batches = iter(train_data)
        skip_batches(batches, progress.batches, self.epoch)
        for batch_index, device_batches in enumerate(batches, progress.batches + 1):
            outputs, losses = self.step(device_batches, first_iteration + batch_index - 1)
            lr = self.trainer.learning_rate
            progress.add(outputs, losses, device_batches)
            if self.loss_scaler.dynamic:
                # The dynamic scaler read the gradients on the host already.
                self.check_loss_scale(batch_index, lr)
            if batch_index % interval == 0 or batch_index == self.iterations_per_epoch:
                sums = progress.host_sums()  # this worker's so far
                seen_loss = sums[0] / (progress.batches * self.local_batch)
                self.check_finite(seen_loss, last_logged_batch, batch_index, lr)
                # The interval's rate counts finished work only: wait for its last update
                # (only here, at a log line) before reading the clock.
                mx.nd.waitall()
                now = time.monotonic()
                batches_done = batch_index - last_logged_batch
                rate = batches_done * self.global_batch / max(now - last_log, 1e-9)
                last_log, last_logged_batch = now, batch_index
                if first_log is None:
                    first_log = (now, batch_index)
                elif batch_index > first_log[1]:
                    steady = (now - first_log[0]) / (batch_index - first_log[1])
                    self.steady_per_batch = steady
                self.log_progress(batch_index, rate, seen_loss, lr, now - started)
                if self.run_logs:
                    self.run_logs.interval(batch_index, sums, rate, lr)
            if self.positions is not None and batch_index < self.iterations_per_epoch:
                progress.seconds = time.monotonic() - started
                self.take_position(progress, last_logged_batch, lr)
        images = self.iterations_per_epoch * self.global_batch
        total_loss, total_correct = self.membership.sum_over_workers(
            "training", progress.host_sums()
        )
        return {
            "train_loss": total_loss / images,
            "train_top1": total_correct / images,
            "lr": lr,
            "loss_scale": self.loss_scaler.scale,
            # Updates a dynamic loss scaler skipped for overflow (float16) this epoch.
            "skipped_steps": self.loss_scaler.skipped_steps - progress.skipped_before,
        }

    def take_position(self, progress, last_checked, lr):
        """After an iteration: write the state of this position when a signal or the time
        asks for it (never of a diverged run), and stop when a signal asked."""
        stop, save = self.positions.due(progress.batches)
        if not save:
            return
        started = time.monotonic()
        loss = progress.mean_loss(self.local_batch)
        self.check_finite(loss, last_checked, progress.batches, lr, weights=True)
        self.save_position(progress)
        seconds = time.monotonic() - started
        self.positions.written()
        if stop:
            message = interruption.stop_message(self.epoch, progress.batches, stop, seconds)
            log.info(message)
            raise interruption.RunStopped(message)
        log.info(
            "state of epoch %d iteration %d saved in %.1f s",
            *(self.epoch, progress.batches, seconds),
        )

    def check_finite(self, loss, last_checked, batch_index, lr, weights=False):
        """Stop when the loss so far in the epoch is not finite, or (`weights`) a trained
        weight, which a non-finite gradient leaves behind for good (runs without a dynamic
        loss scale, whose skipped steps may have an infinite loss). The loss catches a
        divergence at the next log line; the weights, checked before a state is saved,
        also catch one the loss does not show."""
        if self.loss_scaler.dynamic:
            return
        if math.isfinite(loss) and (
            not weights or precision.weights_are_finite(self.net.collect_params().values())
        ):
            return
        what = "loss" if not math.isfinite(loss) else "weights"
        cause = f"training.lr_per_256 ({self.settings.lr_per_256}): too high a learning rate"
        if self.dtype == "float16" and what == "weights":
            # A finite loss but weights broken by overflowing float16 gradients: their
            # range, first.
            scale = self.settings.loss_scale
            remedy = (
                "a smaller static scale or dynamic scaling keeps them in range"
                if scale != "none"
                else "dynamic loss scaling skips such steps"
            )
            cause = f"training.loss_scale ({scale}): float16 gradients overflowed; {remedy}"
        message = self.diverged_message(
            f"the {what} became inf or NaN", last_checked + 1, batch_index, lr, cause
        )
        raise TrainingDiverged(message)

    def check_loss_scale(self, batch_index, lr):
        """Stop when a dynamic loss scale has overflowed at its floor for
        training.max_overflows_at_min_loss_scale steps in a row."""
        limit = self.settings.max_overflows_at_min_loss_scale
        if self.loss_scaler.overflows_at_min < limit:
            return
        what = (
            f"the gradients overflowed {limit} steps in a row at the smallest loss scale "
            f"({self.loss_scaler.min_scale:g})"
        )
        cause = (
            f"training.lr_per_256 ({self.settings.lr_per_256}): too high a learning rate "
            "(the loss scale cannot go lower)"
        )
        raise TrainingDiverged(self.diverged_message(what, batch_index, batch_index, lr, cause))

    def diverged_message(self, what, first_batch, last_batch, lr, cause):
        """The error of a run that diverged in batches first_batch..last_batch (1-based)
        of the current epoch."""
        offset = (self.epoch - 1) * self.iterations_per_epoch - 1
        where = (
            f"iteration {last_batch}"
            if first_batch == last_batch
            else (f"iterations {first_batch} to {last_batch}")
        )
        kept = (
            f"the resumable state of epoch {self.epoch - 1} stays on disk"
            if self.epoch > 1
            else "no epoch finished, so there is no resumable state"
        )
        return (
            f"run {self.run} diverged in epoch {self.epoch}/{self.settings.epochs}: {what} in "
            f"{where} of {self.iterations_per_epoch} (global iterations from 0: "
            f"{offset + first_batch} to {offset + last_batch}), learning rate {lr:.6g}. "
            f"Most likely at fault: {cause}. No outputs were written; {kept}."
        )

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
        """A progress line. The ETAs run to the end of the last validation: this epoch's
        batches left and the later epochs' at the rate measured after an epoch's first
        log interval, plus for each later epoch its start, its validation and the gap
        between epochs as last measured; before any of these was measured, at the rate of
        the batches so far (`seconds` over `batch_index`). In the first epoch, before any
        validation was measured, they count training only and say so."""
        per_batch = seconds / batch_index
        validation = self.val_seconds or 0.0
        left_batches = self.iterations_per_epoch - batch_index
        left_in_epoch = left_batches * (self.steady_per_batch or per_batch) + validation
        epochs_after = self.settings.epochs - self.epoch
        training = self.iterations_per_epoch * (self.steady_per_batch or per_batch)
        each_later = self.epoch_start_seconds + training + validation + self.between_epochs
        left_in_run = left_in_epoch + epochs_after * each_later
        log.info(
            "epoch %d/%d batch %d/%d | %.1f img/s | loss %.4f | lr %.5g | ETA epoch %s, run %s"
            " (%.1f s)%s",
            self.epoch,
            self.settings.epochs,
            batch_index,
            self.iterations_per_epoch,
            rate,
            loss,
            lr,
            format_duration(left_in_epoch),
            format_duration(left_in_run),
            left_in_run,
            "" if self.val_seconds is not None else " (training only)",
        )


def write_outputs(loop, job, state_dir):
    """The run's declared outputs, all appearing at once: the exported models in MXNet's
    checkpoint format (float32 weights; linked from the state folder), metrics.jsonl (one
    line per epoch), dllogger.json (run_logs.py) and report.json, which lists the run's
    attempts (attempts.py)."""
    final = loop.history[-1]
    loop.attempt.end(attempts.FINISHED)
    report = {
        "run": loop.run,
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
        "network": job.network_settings.to_config(),
        "pipeline": job.pipeline_settings.to_config(),
        "machine": devices.describe_machine(),
        "attempts": attempts.listed(state_dir),
    }
    if loop.epoch not in checkpoints.exported_epochs(state_dir):
        # The state was finished before its last export was written (or lost it).
        checkpoints.save_export(state_dir, loop.epoch, loop.net, loop.trainer)
    wanted = [e for e in range(1, loop.epoch + 1) if epochs.exported_after(e, loop.settings)]
    missing = sorted(set(wanted) - set(checkpoints.exported_epochs(state_dir)))
    if missing:
        log.warning(
            "run %s: no export of epochs %s in %s (made with another export_every); the "
            "run folder leaves them out",
            *(loop.run, missing, state_dir),
        )
    with atomic_directory(job.out_dir) as folder:
        checkpoints.link_exports(state_dir, sorted(set(wanted) - set(missing)), folder)
        results.write_metrics(os.path.join(folder, "metrics.jsonl"), loop.history)
        loop.run_logs.finish(folder)
        made_with = {key: report[key] for key in ("settings", "network", "pipeline")}
        results.write(os.path.join(folder, "report.json"), results.RUN_REPORT, report, made_with)
    log.info(
        "run %s: %d epochs, val top-1 %.4f, top-5 %.4f, %s of training in %d attempts (%s "
        "of wall time); outputs in %s",
        loop.run,
        loop.epoch,
        report["val_top1"],
        report["val_top5"],
        format_duration(loop.elapsed),
        len(report["attempts"]),
        format_duration(sum(attempt["wall_seconds"] for attempt in report["attempts"])),
        job.out_dir,
    )
