"""Resumable training state: one complete folder per finished epoch, and the exported
models (model-NNNN.params) of the epochs training.export_every picks.

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

log = logging.getLogger(__name__)

EPOCH_FOLDER = re.compile(r"^epoch-(\d{4,})$")
STATE_FILE = "state.json"
PARAMS_FILE = "net.params"
OPTIMIZER_FILE = "optimizer.states"
EXPORTS = "exports"
MODEL_PREFIX = "model"


def settings_digest(*settings):
    """Short digest of JSON-serialisable settings, independent of key order."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_state_dir(state_root, digest):
    """The state folder of one setting; siblings hold states of other settings."""
    path = os.path.join(state_root, digest)
    others = [name for name in _listdir(state_root) if name != digest]
    if others:
        log.info("state of other settings in %s left untouched: %s", state_root, others)
    return path


def save_epoch(state_dir, epoch, net, trainer, state, keep=2):
    """Write parameters, optimizer state (momentum, update count, lr schedule) and `state`
    (a JSON-serialisable dict) for a finished epoch; keep only the newest `keep` epochs."""
    with atomic_directory(os.path.join(state_dir, f"epoch-{epoch:04d}")) as folder:
        net.save_parameters(os.path.join(folder, PARAMS_FILE))
        trainer.save_states(os.path.join(folder, OPTIMIZER_FILE))
        with open(os.path.join(folder, STATE_FILE), "w") as handle:
            json.dump({**state, "epoch": epoch}, handle, indent=1)
    for old_epoch, path in _epochs(state_dir)[:-keep]:
        log.info("removing the state of epoch %d", old_epoch)
        shutil.rmtree(path, ignore_errors=True)


def load_latest(state_dir, net, trainer, contexts):
    """Restore the newest complete epoch into net and trainer; return its state dict,
    or None when there is nothing to resume."""
    epochs = _epochs(state_dir)
    if not epochs:
        return None
    epoch, folder = epochs[-1]
    net.load_parameters(os.path.join(folder, PARAMS_FILE), ctx=contexts)
    trainer.load_states(os.path.join(folder, OPTIMIZER_FILE))
    with open(os.path.join(folder, STATE_FILE)) as handle:
        state = json.load(handle)
    log.info("resuming after epoch %d from %s", epoch, folder)
    return state


def latest_epoch(state_dir):
    """The newest complete epoch under state_dir, 0 when there is none."""
    epochs = _epochs(state_dir)
    return epochs[-1][0] if epochs else 0


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


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
