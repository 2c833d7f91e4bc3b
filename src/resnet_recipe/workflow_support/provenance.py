"""Where a result came from, recorded in every result file: the code (project version, git
commit, uncommitted changes), the versions of Python and the packages that compute, MXNet's
build features, the machine (host, CPU, GPU models, count and driver) and a digest of the
settings. Two results with different provenance were made by different code or machines.

Reading MXNet's build features imports MXNet, which every computing stage has loaded
already. git is asked about the checkout that holds this package; outside a checkout, or
without git, the commit is None and nothing fails.
"""

import contextlib
import hashlib
import json
import os
import subprocess
from importlib import metadata

from resnet_recipe.workflow_support import devices

DISTRIBUTION = "resnet-recipe"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# MXNet build features that decide where and how fast results are computed. oneDNN is
# called MKLDNN in MXNet 1.x and ONEDNN in 2.x; both names are looked up.
MXNET_FEATURES = ("CUDA", "CUDNN", "NCCL", "MKLDNN", "ONEDNN", "DIST_KVSTORE")


def settings_digest(settings):
    """sha256 of the settings as canonical JSON (keys sorted): equal settings, equal digest,
    whatever the order they were written in."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def git(*args):
    """Output of a git command about the checkout holding this package; None outside git,
    without git, or on any git error."""
    try:
        done = subprocess.run(
            ["git", "-C", PACKAGE_DIR, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def code_origin():
    """Project version, git commit of the checkout and whether it had uncommitted changes
    to tracked files (None for both when the package is not in a git checkout)."""
    version = None
    with contextlib.suppress(metadata.PackageNotFoundError):
        version = metadata.version(DISTRIBUTION)
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "version": version,
        "git_commit": commit,
        "git_uncommitted_changes": None if status is None else bool(status),
    }


def mxnet_features():
    """{feature: enabled} of MXNet's build, for the features in MXNET_FEATURES it knows."""
    import mxnet as mx  # slow import, paid only by stages that have not loaded MXNet

    features = mx.runtime.Features()
    return {name: features.is_enabled(name) for name in MXNET_FEATURES if name in features}


def origin():
    """The provenance of anything made by this process, without a settings digest."""
    machine = devices.describe_machine()
    versions = machine.pop("versions")
    return {
        "code": code_origin(),
        "versions": versions,
        "mxnet_features": mxnet_features(),
        "machine": machine,
    }


def gather(settings):
    """The provenance section of a result made with `settings` (any JSON value)."""
    return {**origin(), "settings_digest": settings_digest(settings)}
