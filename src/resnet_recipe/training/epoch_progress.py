"""The progress of a training epoch, to save at a position inside it and to resume from.

progress = EpochProgress(contexts, loss_scaler.skipped_steps)   # a fresh epoch
progress.add(outputs, losses, device_batches)                   # after each iteration
state = progress.to_state(membership)                           # JSON, every worker's sums
EpochProgress.from_state(state, contexts, membership)           # on resume
skip_batches(iter(train_data), progress.batches, epoch)         # the epoch's trained batches
"""

import itertools
import logging
import time

import mxnet as mx

from resnet_recipe.scoring import evaluation

log = logging.getLogger(__name__)


def skip_batches(batches, count, epoch):
    """Run the iterator `batches` through its first `count` batches without training:
    what a resumed position inside an epoch costs in input work."""
    if not count:
        return
    started = time.monotonic()
    for _ in itertools.islice(batches, count):
        pass
    seconds = time.monotonic() - started
    log.info(
        "skipped the %d batches of epoch %d trained before in %.1f s (%.1f batches/s)",
        *(count, epoch, seconds, count / max(seconds, 1e-9)),
    )


class EpochProgress:
    """How far an epoch got: iterations done, the per-device sums of the loss and of the
    top-1 hits (device arrays), the dynamic loss scaler's skipped steps before the epoch,
    and its training seconds so far (over every attempt)."""

    def __init__(self, contexts, skipped_before, batches=0, loss_sums=None, correct=None):
        self.contexts = contexts
        self.skipped_before = skipped_before
        self.batches = batches
        self.seconds = 0.0
        zeros = [0.0] * len(contexts)
        self.loss_sum = on_devices(loss_sums or zeros, contexts)
        self.correct = on_devices(correct or zeros, contexts)

    def add(self, outputs, losses, device_batches):
        """Count one iteration's per-device outputs and losses (nothing waits for them)."""
        self.batches += 1
        for i, (output, loss, batch) in enumerate(
            zip(outputs, losses, device_batches, strict=True)
        ):
            self.loss_sum[i] += loss.sum()
            self.correct[i] += evaluation.top_k_hits(output, batch.label, 1)

    def mean_loss(self, local_batch):
        """This worker's mean training loss so far (waits for the devices)."""
        return sum(value.asscalar() for value in self.loss_sum) / (self.batches * local_batch)

    def host_sums(self):
        """[loss sum, top-1 hits] of this worker so far."""
        return [sum(v.asscalar() for v in self.loss_sum), sum(v.asscalar() for v in self.correct)]

    def to_state(self, membership):
        """The progress as JSON, with the per-device sums of every worker (each worker
        calls this; every worker fills its own slots of one sum over all)."""
        devices = len(self.contexts)
        slots = [0.0] * (2 * devices * membership.workers)
        own = 2 * devices * membership.rank
        slots[own : own + 2 * devices] = [float(v.asscalar()) for v in self.loss_sum + self.correct]
        summed = membership.sum_over_workers("position", slots)
        per_worker = [summed[i : i + 2 * devices] for i in range(0, len(summed), 2 * devices)]
        return {
            "batches": self.batches,
            "seconds": self.seconds,
            "skipped_before": self.skipped_before,
            "loss_sums": [sums[:devices] for sums in per_worker],
            "correct": [sums[devices:] for sums in per_worker],
        }

    @classmethod
    def from_state(cls, state, contexts, membership):
        """The progress of this worker (membership.rank) from to_state's JSON."""
        if len(state["loss_sums"]) != membership.workers:
            raise ValueError(
                f"the saved position is of {len(state['loss_sums'])} workers, this run has "
                f"{membership.workers}"
            )
        rank = membership.rank
        progress = cls(
            contexts,
            state["skipped_before"],
            state["batches"],
            state["loss_sums"][rank],
            state["correct"][rank],
        )
        progress.seconds = state["seconds"]
        return progress


def on_devices(values, contexts):
    """One float32 1-element array per context, holding the value of that context."""
    return [mx.nd.array([v], ctx=c) for v, c in zip(values, contexts, strict=True)]
