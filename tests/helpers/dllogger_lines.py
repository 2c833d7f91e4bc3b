"""DLLogger logs read the way NVIDIA's own scripts read them (DeepLearningExamples
MxNet/Classification/RN50v1.5 benchmark.py: the lines that hold 'step', each with its
first five characters, `DLLL `, cut off and parsed as JSON), and checked line by line
against dllogger's JSONStreamBackend keys."""

import json
from collections import defaultdict

LOG_KEYS = {"timestamp", "datetime", "elapsedtime", "type", "step", "data"}
METADATA_KEYS = {"timestamp", "datetime", "elapsedtime", "type", "metric", "metadata"}


def read_steps(path):
    """{step as a tuple: [data of each LOG line at that step]}, read as benchmark.py
    reads a log."""
    with open(path) as handle:
        lines = [line for line in handle.read().splitlines() if "step" in line]
    entries = [json.loads(line[5:]) for line in lines]
    steps = defaultdict(list)
    for entry in entries:
        steps[tuple(entry["step"])].append(entry["data"])
    return dict(steps)


def read_checked(path):
    """(LOG entries, {metric: metadata}) of a log whose every line is a DLLogger line."""
    logs, units = [], {}
    with open(path) as handle:
        for line in handle.read().splitlines():
            assert line.startswith("DLLL "), line
            entry = json.loads(line[len("DLLL ") :])
            if entry["type"] == "METADATA":
                assert set(entry) == METADATA_KEYS, entry
                units[entry["metric"]] = entry["metadata"]
                continue
            assert entry["type"] == "LOG" and set(entry) == LOG_KEYS, entry
            float(entry["timestamp"]), float(entry["elapsedtime"])  # strings of numbers
            assert all(isinstance(v, float) for v in entry["data"].values()), entry
            logs.append(entry)
    return logs, units
