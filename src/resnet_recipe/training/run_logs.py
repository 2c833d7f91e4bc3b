"""The logs of a run that users' tools read while it trains, written by the first worker:
a DLLogger log (files/dllogger_log.py: the later NVIDIA MXNet recipe's lines) and
TensorBoard event files, both in the run's state folder (results/checkpoints/{run}/
{digest}/ in the workflow). The run folder is a declared output that appears only at the
end, so these live where a user can watch them grow:

    tensorboard --logdir results/checkpoints        (or any folder above)

At the end the DLLogger log, with its summary line, is copied into the run folder as
dllogger.json. A resumed run first cuts the log back to the steps before its position and
starts a new TensorBoard event file that purges the steps from there on, so neither shows
a stopped or killed attempt's later steps twice. Both logs are on disk at every line, so
a kill right after a state loses nothing that state's resumed run will not log again.

TensorBoard steps are iterations done since the run began; the per-interval scalars
(train/...) and the per-epoch ones (epoch/..., at the epoch's last iteration) share that
axis (files/tensorboard_events.py writes them).
"""

import json
import os
import shutil

from resnet_recipe.files.dllogger_log import PREFIX, DLLoggerLog, steps_before
from resnet_recipe.files.tensorboard_events import ScalarEvents

DLLOGGER_FILE = "dllogger.json"
TENSORBOARD_FOLDER = "tensorboard"
# The DLLogger metrics of a log interval, of an epoch and of the run's summary, as the
# recipe's fit.py logs them in train_val mode.
INTERVAL_METRICS = ("train.loss", "train.ips", "train.lr")
EPOCH_METRICS = (
    "train.loss",
    "train.ips",
    "val.accuracy",
    "val.top_k_accuracy_5",
    "val.ips",
    "val.latency_avg",
)


class RunLogs:
    """The DLLogger log and TensorBoard events of one run (loop: its training.TrainingLoop,
    already restored to the position it resumes at)."""

    def __init__(self, state_dir, loop):
        self.loop = loop
        self.path = os.path.join(state_dir, DLLOGGER_FILE)
        done = loop.epoch * loop.iterations_per_epoch
        resumed_batches = loop.resumed.batches if loop.resumed else 0
        had_lines = steps_before(self.path, loop.epoch, resumed_batches)
        self.dllogger = DLLoggerLog(open(self.path, "a"))
        if not had_lines:
            self.dllogger.units(dict.fromkeys(INTERVAL_METRICS + EPOCH_METRICS))
        self.events = ScalarEvents(
            os.path.join(state_dir, TENSORBOARD_FOLDER), purge_step=done + resumed_batches + 1
        )
        self.previous = None  # (epoch, batches, loss sum, top-1 hits) at the last interval

    def interval(self, batch_index, sums, rate, lr):
        """A log line's values: `sums` [loss sum, top-1 hits] of this worker's batches of the
        epoch so far; loss and top-1 are the mean over the batches since the last line (the
        first line of an epoch, or after a resume: since the epoch began)."""
        loop = self.loop
        since = (0, 0.0, 0.0)
        if self.previous and self.previous[0] == loop.epoch:
            since = self.previous[1:]
        images = (batch_index - since[0]) * loop.local_batch
        loss, top1 = (sums[0] - since[1]) / images, (sums[1] - since[2]) / images
        self.previous = (loop.epoch, batch_index, *sums)
        step = (loop.epoch - 1) * loop.iterations_per_epoch + batch_index
        self.dllogger.log(
            [loop.epoch - 1, batch_index - 1],
            {"train.loss": loss, "train.ips": rate, "train.lr": lr},
        )
        scalars = {"loss": loss, "top1": top1, "images_per_s": rate, "lr": lr}
        scalars["loss_scale"] = loop.loss_scaler.scale
        self.add_scalars("train", scalars, step)

    def epoch(self, metrics, val_images_per_s, val_batch_seconds):
        """An epoch's line of history (metrics.jsonl), validation's images/s and the mean
        seconds of a validation batch."""
        data = {
            "train.loss": metrics["train_loss"],
            "train.ips": metrics["images_per_s"],
            "val.accuracy": metrics["val_top1"],
            "val.top_k_accuracy_5": metrics["val_top5"],
            "val.ips": val_images_per_s,
            "val.latency_avg": val_batch_seconds,
        }
        self.dllogger.log([metrics["epoch"] - 1], data)
        names = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "images_per_s")
        scalars = {name: metrics[name] for name in (*names, "lr", "loss_scale")}
        scalars["val_images_per_s"] = val_images_per_s
        self.add_scalars("epoch", scalars, metrics["epoch"] * self.loop.iterations_per_epoch)

    def add_scalars(self, group, scalars, step):
        self.events.add({f"{group}/{name}": value for name, value in scalars.items()}, step)

    def finish(self, folder):
        """The summary line over every epoch in the log (those of earlier attempts too),
        then the log into `folder`."""
        self.dllogger.log([], summary_data(self.path))
        shutil.copyfile(self.path, os.path.join(folder, DLLOGGER_FILE))

    def close(self):
        self.dllogger.handle.close()
        self.events.close()


def summary_data(path):
    """The recipe's summary over the epoch lines of the log at `path`: the lowest training
    loss, the highest accuracies, the mean of the rates and latencies (empty without epoch
    lines: a state written before this log existed)."""
    with open(path) as handle:
        entries = [json.loads(line[len(PREFIX) :]) for line in handle if line.startswith(PREFIX)]
    epochs = [entry["data"] for entry in entries if len(entry.get("step", ())) == 1]
    if not epochs:
        return {}
    summary = {"train.loss": min(data["train.loss"] for data in epochs)}
    for name in ("val.accuracy", "val.top_k_accuracy_5"):
        summary[name] = max(data[name] for data in epochs)
    for name in ("train.ips", "val.ips", "val.latency_avg"):
        summary[name] = sum(data[name] for data in epochs) / len(epochs)
    return summary
