"""DLLogger JSON lines: the log format of NVIDIA's later MXNet ResNet-50 v1.5 recipe
(DeepLearningExamples MxNet/Classification/RN50v1.5: log_utils.py and fit.py, written
through dllogger 1.x's JSONStreamBackend), so that the parsers users have for those logs
read this workflow's too.

Each line is `DLLL ` and one JSON object, in one of two kinds:

    {"timestamp": "<Unix seconds>", "datetime": "<local time with its UTC offset>",
     "elapsedtime": "<seconds since the log was opened>", "type": "LOG",
     "step": [...], "data": {metric: value, ...}}
    {"timestamp": ..., "elapsedtime": ..., "datetime": ..., "type": "METADATA",
     "metric": name, "metadata": {"unit": "images/s" or "s" or null}}

timestamp and elapsedtime are strings, as dllogger writes them. Steps are the recipe's:
[epoch, iteration] at a log interval, [epoch] after an epoch (both counted from 0, the
iteration being the index of the interval's last batch), [] for the summary.

    log = DLLoggerLog(handle)          # an open text file
    log.units(UNITS)                   # the metadata lines
    log.log([0, 9], {"train.loss": 2.3, "train.ips": 812.5, "train.lr": 0.1})
    write_log(path, [([0], data), ([], summary)])   # a stage's whole log, atomically
    write_beside("results/score/a.json", entries)   # into results/score/a.dllogger.json
"""

import datetime
import json
import os

from resnet_recipe.files.atomic_files import atomic_open

PREFIX = "DLLL "
# The unit of every metric written here (None: a pure number), as the recipe's
# log_utils.py declares them: throughput in images/s, latencies in seconds.
UNITS = {
    "train.loss": None,
    "train.ips": "images/s",
    "train.lr": None,
    "val.loss": None,
    "val.accuracy": None,
    "val.top_k_accuracy_5": None,
    "val.ips": "images/s",
    "val.latency_avg": "s",
    **{f"val.latency_{p}": "s" for p in (50, 90, 95, 99, 100)},
}


class DLLoggerLog:
    """DLLogger lines written to an open text file, each flushed at once so that a reader
    can follow the log while it grows."""

    def __init__(self, handle):
        self.handle = handle
        self.opened = datetime.datetime.now()

    def units(self, metrics):
        """One METADATA line per metric of `metrics` (an iterable of UNITS' keys)."""
        for metric in metrics:
            self.write(type="METADATA", metric=metric, metadata={"unit": UNITS[metric]})

    def log(self, step, data):
        """One LOG line: `step` a sequence of ints, `data` {metric: number}."""
        values = {name: float(value) for name, value in data.items()}
        self.write(type="LOG", step=[int(part) for part in step], data=values)

    def write(self, **fields):
        now = datetime.datetime.now()
        line = {
            "timestamp": str(now.timestamp()),
            "datetime": str(now.astimezone()),
            "elapsedtime": str((now - self.opened).total_seconds()),
            **fields,
        }
        self.handle.write(PREFIX + json.dumps(line) + "\n")
        self.handle.flush()


def write_log(path, entries):
    """A whole DLLogger log at once (atomically): the units of every metric in `entries`,
    then one LOG line per (step, data) of `entries`."""
    metrics = dict.fromkeys(name for _, data in entries for name in data)
    with atomic_open(path) as handle:
        log = DLLoggerLog(handle)
        log.units(metrics)
        for step, data in entries:
            log.log(step, data)


def write_beside(result_path, entries):
    """write_log of a stage's JSON result into path_beside(result_path)."""
    write_log(path_beside(result_path), entries)


def validation_latencies(latency_ms):
    """The recipe's val.latency_* (seconds) of a result's latency summary in milliseconds
    (mean, p50 ... p99, max: the slowest batch, the recipe's val.latency_100)."""
    data = {"val.latency_avg": latency_ms["mean"] / 1000}
    for key, value in latency_ms.items():
        if key.startswith("p"):
            data[f"val.latency_{key[1:]}"] = value / 1000
    data["val.latency_100"] = latency_ms["max"] / 1000
    return data


def path_beside(result_path):
    """The DLLogger log of a stage's JSON result: results/score/a.json ->
    results/score/a.dllogger.json."""
    stem, _ = os.path.splitext(result_path)
    return stem + ".dllogger.json"


def steps_before(path, epochs, iterations):
    """Keep in the log at `path` (if any) its METADATA lines and the LOG lines of steps
    before a position `iterations` into the epoch after `epochs` finished ones (epochs
    counted from 1, as a resumed run's position): what a run resumed there has logged
    already. The lines of a killed attempt's later steps are written again by the resumed
    run. Returns whether the log had lines to keep."""
    if not os.path.exists(path):
        return False
    with open(path) as handle:
        lines = handle.read().splitlines()
    kept = [line for line in lines if _before(line, epochs, iterations)]
    with atomic_open(path) as handle:
        handle.writelines(line + "\n" for line in kept)
    return bool(kept)


def _before(line, epochs, iterations):
    if not line.startswith(PREFIX):
        return False
    try:
        entry = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError:
        return False  # a line cut off by a kill
    step = entry.get("step")
    if entry.get("type") != "LOG" or step is None:
        return entry.get("type") == "METADATA"
    if len(step) == 1:
        return step[0] < epochs
    return len(step) == 2 and (step[0] < epochs or (step[0] == epochs and step[1] < iterations))
