"""Resumable training state: one complete folder per position (a finished epoch,
epoch-NNNN, or a place inside an epoch, epoch-NNNN-iteration-IIIIII after I iterations of
epoch N), and the exported models (model-NNNN.params) of the epochs training.export_every
picks. Positions order as (epochs finished, iterations into the next one).

The state lives outside the workflow's declared outputs (a failed job keeps it) in a
folder named after a digest of every setting that shapes the result, so a changed setting
starts afresh instead of resuming from checkpoints of the old one.

The exports wait here too, in exports/epoch-NNNN/, until the run has finished: the run
folder is a declared output that appears at once at the end (a killed or diverged job
must leave nothing that looks complete, and Snakemake deletes the declared outputs of a
failed job), while a resumed run must keep the exports of the epochs it trained before.
At the end they are hard-linked into the run folder: no copy of 100 MB per epoch, and
the run folder stays whole if the state is deleted later (a copy where the two folders
are on different file systems).
"""

import hashlib
import json
import logging
import os
import re
import shutil

from resnet_recipe.files.atomic_files import atomic_directory
from resnet_recipe.model import network
from resnet_recipe.workflow_support.declaration import RESULT, names_affecting

log = logging.getLogger(__name__)

EPOCH_FOLDER = re.compile(r"^epoch-(\d{4,})$")
POSITION_FOLDER = re.compile(r"^epoch-(\d{4,})(?:-iteration-(\d{6,}))?$")
STATE_FILE = "state.json"
PARAMS_FILE = "net.params"
OPTIMIZER_FILE = "optimizer.states"
# Each device's own BN running statistics (distributed.statistics_of_every_device).
DEVICE_STATISTICS_FILE = "device_statistics.nd"
EXPORTS = "exports"
MODEL_PREFIX = "model"


def settings_digest(*settings):
    """Short digest of JSON-serialisable settings, independent of key order."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_digest(settings, network_settings, pipeline_settings, indexes, classes):
    """Digest of everything that shapes a run's result: the run, network and input settings
    whose declarations say they affect the result (not those of speed, logging or which
    epochs are exported), the packed splits' indexes and the classes."""
    return settings_digest(
        result_settings(settings),
        result_settings(network_settings),
        result_settings(pipeline_settings),
        *(record_identity(idx) for idx in indexes),
        classes,
    )


def result_settings(section):
    """{name: value} of the settings of `section` that affect a run's result."""
    config = section.to_config()
    return {name: config[name] for name in names_affecting(section, RESULT)}


def record_identity(idx_path):
    """What identifies a packed split cheaply: a digest of its index (record offsets)."""
    with open(idx_path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def run_state_dir(state_root, digest):
    """The state folder of one setting; siblings hold states of other settings."""
    path = os.path.join(state_root, digest)
    others = [name for name in _listdir(state_root) if name != digest]
    if others:
        log.info("state of other settings in %s left untouched: %s", state_root, others)
    return path


def position_folder(position):
    """The folder name of position (epochs finished, iterations into the next epoch)."""
    epochs, iterations = position
    if iterations == 0:
        return f"epoch-{epochs:04d}"
    return f"epoch-{epochs + 1:04d}-iteration-{iterations:06d}"


def position_text(position):
    """(epochs finished, iterations into the next) in words: "epoch 3", or "iteration 10
    of epoch 4"."""
    epochs, iterations = position
    return f"iteration {iterations} of epoch {epochs + 1}" if iterations else f"epoch {epochs}"


def save_position(state_dir, position, net, trainer, state, device_statistics, keep=2):
    """Write parameters, optimizer state (momentum, update count, lr schedule), every
    device's own BN statistics (an NDArray) and `state` (a JSON-serialisable dict) at
    `position` (epochs finished, iterations into the next); keep only the newest `keep`
    positions."""
    import mxnet as mx

    with atomic_directory(os.path.join(state_dir, position_folder(position))) as folder:
        net.save_parameters(os.path.join(folder, PARAMS_FILE))
        mx.nd.save(os.path.join(folder, DEVICE_STATISTICS_FILE), [device_statistics])
        trainer.save_states(os.path.join(folder, OPTIMIZER_FILE))
        with open(os.path.join(folder, STATE_FILE), "w") as handle:
            json.dump({**state, "epoch": position[0]}, handle, indent=1)
    for old_position, path in _positions(state_dir)[:-keep]:
        log.info("removing the state of %s", position_folder(old_position))
        shutil.rmtree(path, ignore_errors=True)


def load_latest(state_dir, net, trainer, contexts):
    """Restore the newest complete position into net and trainer; return (its state dict,
    every device's own BN statistics), (None, None) when there is nothing to resume. The
    statistics are None in a state saved without them (the parameters' average stands)."""
    import mxnet as mx

    positions = _positions(state_dir)
    if not positions:
        return None, None
    position, folder = positions[-1]
    net.load_parameters(os.path.join(folder, PARAMS_FILE), ctx=contexts)
    trainer.load_states(os.path.join(folder, OPTIMIZER_FILE))
    with open(os.path.join(folder, STATE_FILE)) as handle:
        state = json.load(handle)
    statistics = os.path.join(folder, DEVICE_STATISTICS_FILE)
    rows = mx.nd.load(statistics)[0] if os.path.exists(statistics) else None
    log.info("resuming after %s from %s", position_text(position), folder)
    return state, rows


def latest_position(state_dir):
    """The newest complete position under state_dir, (0, 0) when there is none."""
    positions = _positions(state_dir)
    return positions[-1][0] if positions else (0, 0)


def save_export(state_dir, epoch, net, trainer):
    """Export the model after `epoch` (network.export_checkpoint: model-symbol.json and
    model-NNNN.params, float32) into the state's exports folder, all at once."""
    with atomic_directory(os.path.join(state_dir, EXPORTS, f"epoch-{epoch:04d}")) as folder:
        network.export_checkpoint(net, os.path.join(folder, MODEL_PREFIX), epoch, trainer)


def exported_epochs(state_dir):
    """The epochs whose export is complete in the state folder, oldest first."""
    return [epoch for epoch, _ in _epochs(os.path.join(state_dir, EXPORTS))]


def link_exports(state_dir, epochs, folder):
    """Put the model-NNNN.params of `epochs` (exported, see save_export) and the newest
    one's model-symbol.json into `folder`, as hard links where the file system allows."""
    exports = os.path.join(state_dir, EXPORTS)
    for epoch in epochs:
        source = os.path.join(exports, f"epoch-{epoch:04d}")
        names = [f"{MODEL_PREFIX}-{epoch:04d}.params"]
        if epoch == epochs[-1]:
            names.append(f"{MODEL_PREFIX}-symbol.json")
        for name in names:
            _link_or_copy(os.path.join(source, name), os.path.join(folder, name))


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def _epochs(state_dir):
    """(epoch, folder) of every complete epoch folder, oldest first. Incomplete ones are
    temporary folders with another name, so they never match."""
    found = []
    for name in _listdir(state_dir):
        match = EPOCH_FOLDER.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(state_dir, name)))
    return sorted(found)


def _positions(state_dir):
    """((epochs, iterations), folder) of every complete position folder, oldest first."""
    found = []
    for name in _listdir(state_dir):
        match = POSITION_FOLDER.match(name)
        if match:
            epoch, iterations = int(match.group(1)), int(match.group(2) or 0)
            position = (epoch - 1, iterations) if iterations else (epoch, 0)
            found.append((position, os.path.join(state_dir, name)))
    return sorted(found)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
