"""Which devices a stage runs on: GPU discovery without CUDA, disjoint GPUs for jobs that
run at the same time (one flock-ed lock file per GPU), MXNet contexts, machine facts."""

import contextlib
import errno
import fcntl
import functools
import logging
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import time
from importlib import metadata

from resnet_recipe.files.user_errors import UserError

log = logging.getLogger(__name__)

# One folder per GPU the NVIDIA driver knows; reading it never initialises CUDA.
NVIDIA_PROC_GPUS = "/proc/driver/nvidia/gpus"

# Distributions whose versions go into result files; the first installed name of each
# entry is reported (MXNet and DALI come in CUDA flavours with different names).
VERSIONED_PACKAGES = {
    "mxnet": ("mxnet", "mxnet-cu102", "mxnet-cu112"),
    "nvidia-dali": ("nvidia-dali-cuda110", "nvidia-dali-cuda120", "nvidia-dali"),
    "numpy": ("numpy",),
}


# CPU features that decide which oneDNN kernels MXNet runs (and so its results' last digits
# and its speed): AVX2, the AVX-512 families, and AMX. Names as /proc/cpuinfo spells them.
KERNEL_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# oneDNN names the instruction set it dispatches to in its first verbose line; a child
# process runs one convolution to get it, since MXNet 1.9.1 does not export oneDNN's API.
ONEDNN_ISA_PROBE = (
    "import mxnet as mx\n"
    "x = mx.nd.ones((1, 1, 1, 1))\n"
    "mx.nd.Convolution(x, x, kernel=(1, 1), num_filter=1, no_bias=True).wait_to_read()\n"
)
ONEDNN_ISA_PREFIX = "dnnl_verbose,info,cpu,isa:"


def nvidia_smi_gpus():
    """(name, driver version) of each GPU nvidia-smi lists; [] when nvidia-smi is missing
    or fails. The driver is None if nvidia-smi does not give it."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("nvidia-smi failed, counting no GPUs: %s", error)
        return []
    gpus = []
    for line in listing.splitlines():
        name, _, driver = (field.strip() for field in line.partition(","))
        if name:
            gpus.append((name, driver or None))
    return gpus


def gpu_names():
    """Names of the GPUs nvidia-smi lists; [] when nvidia-smi is missing or fails."""
    return [name for name, _ in nvidia_smi_gpus()]


def count_gpus():
    """Number of NVIDIA GPUs on this machine, found without initialising CUDA (so that
    CUDA_VISIBLE_DEVICES can still be set afterwards): 0 when there is no NVIDIA driver."""
    if os.path.isdir(NVIDIA_PROC_GPUS):
        return len(os.listdir(NVIDIA_PROC_GPUS))
    return len(gpu_names())


def slurm_assigned_gpus():
    """GPU ids SLURM gave this job, or None when not running inside a SLURM job that got
    GPUs (SLURM exports CUDA_VISIBLE_DEVICES for jobs with a GPU request)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if os.environ.get("SLURM_JOB_ID") and visible is not None:
        return split_device_list(visible)
    return None


def gpus_phrase(count):
    """'1 GPU', '8 GPUs'."""
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def split_device_list(value):
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def gpu_pool(total=None):
    """Ids of the GPUs this machine lets jobs choose from: the user's CUDA_VISIBLE_DEVICES
    when set (a restriction to honour), else 0..total-1 with total counted when None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return split_device_list(visible)
    return [str(index) for index in range(count_gpus() if total is None else total)]


@contextlib.contextmanager
def acquire_gpus(count, lock_dir, total=None, poll_seconds=5.0):
    """Hold `count` GPUs for the life of the block and export them as CUDA_VISIBLE_DEVICES.

    Yields the list of GPU ids (strings as CUDA_VISIBLE_DEVICES spells them). count 0 means
    the CPU: nothing is taken and the environment is left alone. Inside a SLURM job the
    scheduler's CUDA_VISIBLE_DEVICES is kept. Otherwise each GPU is taken by an exclusive
    flock on `lock_dir`/gpu<ID>.lock, held on an open descriptor, so the kernel frees it
    when the process ends in any way, SIGKILL included; a CUDA_VISIBLE_DEVICES the user set
    limits the choice to the GPUs it lists. When fewer than `count` GPUs are
    free, none are held while waiting (two jobs never block each other holding half each)
    and the wait is logged. `total` replaces the machine's GPU count (tests, dry setups).
    Must run before MXNet initialises CUDA: CUDA reads CUDA_VISIBLE_DEVICES only once.
    """
    if count < 0:
        raise UserError(f"the GPU count must be 0 (CPU) or more, got {count}")
    if count == 0:
        yield []
        return
    assigned = slurm_assigned_gpus()
    if assigned is not None:
        if len(assigned) < count:
            raise UserError(
                f"this stage needs {gpus_phrase(count)} but SLURM job {os.environ['SLURM_JOB_ID']} "
                f"was given {len(assigned)} (CUDA_VISIBLE_DEVICES={','.join(assigned)}): "
                "request as many GPUs for the job (the rule's gpu resource)"
            )
        log.info("using the GPUs SLURM assigned: %s", ",".join(assigned))
        yield assigned
        return
    if os.environ.get("SLURM_JOB_ID"):
        log.warning(
            "SLURM job %s was given no GPUs (no CUDA_VISIBLE_DEVICES): taking free ones "
            "of the node through lock files",
            os.environ["SLURM_JOB_ID"],
        )
    pool = gpu_pool(total)
    if count > len(pool):
        have = f"{len(pool)} ({','.join(pool)})" if pool else "none"
        where = (
            "CUDA_VISIBLE_DEVICES leaves"
            if "CUDA_VISIBLE_DEVICES" in os.environ
            else "this machine has"
        )
        raise UserError(
            f"this stage needs {gpus_phrase(count)} but {where} {have}: lower its gpus setting, "
            "or use gpus: 0 to run on the CPU"
        )
    with _held_locks(count, pool, lock_dir, poll_seconds) as ids:
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        log.info("holding GPUs %s (locks in %s)", ",".join(ids), lock_dir)
        try:
            yield ids
        finally:
            if previous is None:
                del os.environ["CUDA_VISIBLE_DEVICES"]
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous


@contextlib.contextmanager
def _held_locks(count, pool, lock_dir, poll_seconds):
    _make_shared_folder(lock_dir)
    last_free = None
    while True:
        held, free = _try_lock(count, pool, lock_dir)
        if held:
            break
        if free != last_free:
            log.info(
                "waiting for %d free GPUs of %s: free now %s (locks in %s)",
                count,
                ",".join(pool),
                ",".join(free) or "none",
                lock_dir,
            )
            last_free = free
        time.sleep(poll_seconds)
    try:
        yield list(held)
    finally:
        for fd in held.values():
            os.close(fd)  # closing the only descriptor releases the flock


def _try_lock(count, pool, lock_dir):
    """Lock `count` GPUs of the pool: ({id: fd}, ids locked) on success, or ({}, ids that
    were free) with nothing kept when too few are free or a lock file is refused."""
    held = {}
    try:
        for gpu in pool:
            fd = open_lock_file(os.path.join(lock_dir, f"gpu{gpu}.lock"))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held[gpu] = fd
            if len(held) == count:
                taken, held = held, {}
                return taken, list(taken)
        return {}, list(held)
    finally:
        for fd in held.values():
            os.close(fd)


# Read-only is enough for flock, and works on lock files other users created. The folder
# may be shared with other users, so nothing planted there is followed: not a symbolic link
# (O_NOFOLLOW), and not a FIFO or device, which could block the open (O_NONBLOCK) and is
# refused after it.
LOCK_FILE_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK


def open_lock_file(path):
    """A descriptor of the regular file `path`, made if missing; UserError for anything
    else there (a symbolic link, a FIFO, a folder) or a folder the user cannot write."""
    refused = "remove it, or set devices.lock_dir to another folder"
    try:
        fd = os.open(path, LOCK_FILE_FLAGS, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(
                f"GPU lock file {path} is a symbolic link, which is never followed: {refused}"
            ) from error
        if error.errno == errno.EISDIR:
            raise UserError(f"GPU lock file {path} is not a regular file: {refused}") from error
        raise UserError(
            f"cannot open GPU lock file {path}: {error.strerror}; set devices.lock_dir "
            "to a folder every user of these GPUs can write (docs/gpus.md)"
        ) from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"GPU lock file {path} is not a regular file: {refused}")
    return fd


def _make_shared_folder(path):
    """Make sure the lock folder is a real folder in which no one can swap another user's
    lock files. Made if missing, writable by every user and sticky like /tmp (mode 1777):
    jobs of several users share the machine's GPUs, and a lock only keeps jobs apart that
    see the same files; the sticky bit lets no one but a file's owner (and the folder's)
    remove or replace it."""
    try:
        os.makedirs(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise UserError(
            f"cannot make GPU lock folder {path} (devices.lock_dir): {error.strerror}"
        ) from error
    else:
        # chmod through a descriptor of the folder just made, never through a name that
        # could have been swapped for a link meanwhile; mkdir's mode is cut by the umask.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o1777)
        finally:
            os.close(fd)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
        raise UserError(
            f"GPU lock folder {path} (devices.lock_dir) is {kind}: set devices.lock_dir "
            "to a real folder"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise UserError(
            f"GPU lock folder {path} (devices.lock_dir) is writable by others but not "
            f"sticky (mode {stat.S_IMODE(info.st_mode):o}), so anyone could replace a lock "
            f"that a job holds: chmod +t {path}, or set devices.lock_dir to another folder"
        )


def contexts(gpus, cpu_contexts=1):
    """MXNet contexts for a stage: gpu(0)..gpu(gpus-1), numbered within
    CUDA_VISIBLE_DEVICES, or cpu_contexts CPU contexts when gpus is 0."""
    import mxnet as mx  # slow import, and only stages that compute need it

    if gpus:
        return [mx.gpu(index) for index in range(gpus)]
    return [mx.cpu(index) for index in range(cpu_contexts)]


def cpu_model():
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags():
    """The KERNEL_CPU_FLAGS this CPU has, in that order; [] where /proc/cpuinfo is missing."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in KERNEL_CPU_FLAGS if flag in present]
    return []


@functools.cache
def onednn_isa():
    """The instruction set MXNet's oneDNN runs its kernels with on this machine, as oneDNN
    reports it (DNNL_MAX_CPU_ISA, inherited, can lower it); None if MXNet was built without
    oneDNN or the probe fails. About 2 s once per process."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", ONEDNN_ISA_PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**os.environ, "DNNL_VERBOSE": "1", "MKLDNN_VERBOSE": "1"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in probe.stdout.splitlines():
        if line.startswith(ONEDNN_ISA_PREFIX):
            return line[len(ONEDNN_ISA_PREFIX) :].strip()
    return None


def package_version(names):
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(name)
    return None


def package_versions():
    """Versions of Python and the packages that decide results and speed."""
    versions = {"python": platform.python_version()}
    versions.update({key: package_version(names) for key, names in VERSIONED_PACKAGES.items()})
    return versions


def describe_machine():
    """Facts about this machine for result files: host, CPU (model, the flags that pick
    MXNet's kernels, the oneDNN instruction set in force), GPUs
    (model of each, and the NVIDIA driver), package versions."""
    gpus = nvidia_smi_gpus()
    drivers = sorted({driver for _, driver in gpus if driver})
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "onednn_isa": onednn_isa(),
        "logical_cores": os.cpu_count(),
        "gpus": [name for name, _ in gpus],
        "gpu_count": len(gpus),
        "gpu_driver": ", ".join(drivers) or None,
        "versions": package_versions(),
    }
