"""Resumable training state: one complete folder per finished epoch.

The state lives outside the workflow's declared outputs (a failed job keeps it) in a
folder named after a digest of every setting that shapes the result, so a changed setting
starts afresh instead of resuming from checkpoints of the old one.
"""

import hashlib
import json
import logging
import os
import re
import shutil

from resnet_recipe.atomic_files import atomic_directory

log = logging.getLogger(__name__)

EPOCH_FOLDER = re.compile(r"^epoch-(\d{4,})$")
STATE_FILE = "state.json"
PARAMS_FILE = "net.params"
OPTIMIZER_FILE = "optimizer.states"


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
