"""The epochs of a run, each from an input pipeline of its own and saved at its end, and
the resumable state of a position (a finished epoch, or a place inside an epoch).

    resume(loop, state_dir)                    # restore the newest saved position; return it
    train_epochs(loop, job, state_dir)         # the epochs left; RunStopped on a stop signal
    save_state(loop, state_dir[, progress])    # the state after an epoch, or inside one
"""

import logging
import time

from resnet_recipe.data import pipelines
from resnet_recipe.training import checkpoints, distributed, interruption

log = logging.getLogger(__name__)


def train_epochs(loop, job, state_dir):
    """The epochs loop has still to train, each from an input pipeline of its own (see
    train_epoch_batches), each saved at its end; a stop signal ends the run after the
    state of an epoch (RunStopped)."""
    if loop.epoch >= loop.settings.epochs:
        return
    val_data = pipelines.val_batches(
        job.val_rec, job.val_idx, loop.contexts, **stream_settings(loop, job)
    )
    while loop.epoch < loop.settings.epochs:
        loop.run_epoch(train_epoch_batches(loop, job), val_data)
        started = time.monotonic()
        save_state(loop, state_dir)
        loop.positions.written()
        stop = loop.positions.stop_after_epoch()
        if stop and loop.epoch < loop.settings.epochs:
            seconds = time.monotonic() - started
            message = interruption.stop_message(
                loop.epoch, loop.iterations_per_epoch, stop, seconds
            )
            log.info(message)
            raise interruption.RunStopped(message)


def resume(loop, state_dir):
    """Restore into loop the newest position under state_dir, if any, and return it
    ((0, 0) for none). Every worker must resume at the same position: checked before any
    of them touches the kvstore's parameters (loading the optimizer state does)."""
    epochs, iterations = checkpoints.latest_position(state_dir)
    loop.membership.require_same("the epoch to resume after", epochs)
    loop.membership.require_same("the iteration to resume at", iterations)
    state, rows = checkpoints.load_latest(state_dir, loop.net, loop.trainer, loop.contexts)
    loop.restore(state)
    if rows is not None:
        first_row, _ = distributed.shard_plan(loop.membership, len(loop.contexts))
        distributed.restore_device_statistics(loop.net, rows, first_row)
    return epochs, iterations


def save_state(loop, state_dir, progress=None):
    """The state after loop's epoch (progress None), or inside the next epoch after
    progress.batches iterations (an EpochProgress), and the epoch's export when one is
    due, from the first worker (parameters with the BN statistics averaged over all
    workers' devices, and each device's own beside them; every worker calls this)."""
    partial = progress.to_state(loop.membership) if progress else None
    device_statistics = loop.membership.statistics_of_every_device(loop.net)
    with loop.membership.statistics_of_all_workers(loop.net, device_statistics):
        if not loop.membership.writes_outputs:
            return
        # The export first: a crash between the two repeats the epoch and its export.
        if progress is None and exported_after(loop.epoch, loop.settings):
            checkpoints.save_export(state_dir, loop.epoch, loop.net, loop.trainer)
        epochs = loop.epoch - 1 if progress else loop.epoch
        position = (epochs, progress.batches if progress else 0)
        state = {**loop.state(), "partial_epoch": partial}
        checkpoints.save_position(
            state_dir, position, loop.net, loop.trainer, state, device_statistics
        )
        if loop.attempt:
            loop.attempt.state(position)


def exported_after(epoch, run):
    """Whether model-NNNN.params of `epoch` is exported: every run.export_every epochs
    (0: none) and always the last epoch."""
    every = run.export_every
    return epoch == run.epochs or (every > 0 and epoch % every == 0)


def stream_settings(loop, job):
    """The keywords of pipelines.train_batches and val_batches common to both: this
    worker's shards of loop's run in the network's layout."""
    run = loop.settings
    first_shard, total_shards = distributed.shard_plan(loop.membership, len(loop.contexts))
    return dict(
        batch_per_device=run.batch_per_device,
        settings=job.pipeline_settings,
        dtype=run.dtype,
        layout=job.network_settings.layout_for(run.dtype),
        num_classes=loop.classes,
        first_shard=first_shard,
        total_shards=total_shards,
    )


def train_epoch_batches(loop, job):
    """The training batches of the epoch after loop.epoch, from a pipeline built for that
    epoch alone: its order and augmentations follow from the run's seed and the epoch, so
    a run resumed inside the epoch rebuilds them exactly and skips the batches it trained
    (TrainingLoop.train_one_epoch). Each epoch starts its pipelines one shard further on,
    as one DALI pipeline moves to the next shard every epoch. Every worker runs the loop's
    iterations per epoch whatever the size of its shard."""
    return pipelines.train_batches(
        job.train_rec,
        job.train_idx,
        loop.contexts,
        seed=loop.settings.seed * 1000 + loop.epoch,
        shard_offset=loop.epoch,
        iterations=loop.iterations_per_epoch,
        **stream_settings(loop, job),
    )
