"""GPU discovery, the lock-file GPU allocator in this process (concurrent holders in other
processes: stages/test_gpu_locks.py), MXNet contexts. No GPU is needed: the GPU total is
injected."""

import fcntl
import logging
import os
import threading
import time

import pytest

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support import devices

pytestmark = pytest.mark.usefixtures("outside_slurm")


def test_exports_cuda_visible_devices_and_restores_it(lock_dir):
    with devices.acquire_gpus(2, lock_dir, total=3) as ids:
        assert ids == ["0", "1"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert sorted(os.listdir(lock_dir)) == ["gpu0.lock", "gpu1.lock"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def take_lock(lock_dir, gpu, seconds=0.0):
    """An exclusive flock on gpu<gpu>.lock on a descriptor of its own (as another job
    holds it), tried for up to `seconds`; the descriptor, or None when it stayed taken."""
    deadline = time.monotonic() + seconds
    fd = os.open(os.path.join(lock_dir, f"gpu{gpu}.lock"), os.O_RDONLY | os.O_CREAT, 0o644)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)


def test_a_waiter_that_finds_too_few_free_holds_none_of_them(lock_dir, caplog):
    """Another job holds GPU 0; a job needing both GPUs finds only GPU 1 free. While it
    waits GPU 1 stays free for others, and once GPU 0 is freed it takes both."""
    lock_dir.mkdir()
    other = take_lock(lock_dir, 0)
    got = []

    def waiter():
        with devices.acquire_gpus(2, str(lock_dir), total=2, poll_seconds=0.01) as ids:
            got.append(ids)

    thread = threading.Thread(target=waiter, daemon=True)
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        thread.start()
        deadline = time.monotonic() + 30
        while "free now 1 " not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "waiting for 2 free GPUs of 0,1: free now 1 (locks in" in caplog.text
        # The waiter holds GPU 1 only for an instant at each try.
        third = take_lock(lock_dir, 1, seconds=5)
        assert third is not None, "the waiting job kept GPU 1"
        os.close(third)
        assert thread.is_alive() and not got
        os.close(other)
        thread.join(30)
    assert got == [["0", "1"]]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_cpu_takes_nothing(lock_dir):
    with devices.acquire_gpus(0, lock_dir, total=2) as ids:
        assert ids == []
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not lock_dir.exists()


def test_more_gpus_than_exist_is_a_clear_error(lock_dir):
    with pytest.raises(UserError, match=r"needs 3 GPUs but this machine has 2 \(0,1\)"):
        with devices.acquire_gpus(3, lock_dir, total=2):
            pass
    with pytest.raises(UserError, match="has none.*gpus: 0 to run on the CPU"):
        with devices.acquire_gpus(1, lock_dir, total=0):
            pass


def test_slurm_assignment_is_kept(lock_dir, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with devices.acquire_gpus(2, lock_dir, total=8) as ids:
        assert ids == ["2", "3"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert not lock_dir.exists()
    with pytest.raises(UserError, match="needs 3 GPUs but SLURM job 42 was given 2"):
        with devices.acquire_gpus(3, lock_dir):
            pass


def test_slurm_job_without_gpus_takes_locks(lock_dir, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    with devices.acquire_gpus(1, lock_dir, total=2) as ids:
        assert ids == ["0"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert "SLURM job 43 was given no GPUs" in caplog.text


def test_a_users_cuda_visible_devices_limits_the_choice(lock_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    with devices.acquire_gpus(1, lock_dir, total=8) as ids:
        assert ids == ["5"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"
    with pytest.raises(UserError, match=r"needs 3 GPUs but CUDA_VISIBLE_DEVICES leaves 2"):
        with devices.acquire_gpus(3, lock_dir, total=8):
            pass


def test_counts_gpus_from_the_driver_or_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "NVIDIA_PROC_GPUS", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert devices.count_gpus() == 0
    assert devices.gpu_names() == []

    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text("#!/bin/sh\nprintf 'Tesla V100-SXM2-16GB\\nTesla V100-SXM2-16GB\\n'\n")
    fake_smi.chmod(0o755)
    assert devices.gpu_names() == ["Tesla V100-SXM2-16GB"] * 2
    assert devices.count_gpus() == 2

    proc_gpus = tmp_path / "gpus"
    for bus_id in ("0000:06:00.0", "0000:07:00.0", "0000:0a:00.0"):
        (proc_gpus / bus_id).mkdir(parents=True)
    monkeypatch.setattr(devices, "NVIDIA_PROC_GPUS", str(proc_gpus))
    assert devices.count_gpus() == 3


def test_contexts():
    import mxnet as mx

    assert devices.contexts(0) == [mx.cpu(0)]
    assert devices.contexts(0, cpu_contexts=2) == [mx.cpu(0), mx.cpu(1)]
    assert devices.contexts(2) == [mx.gpu(0), mx.gpu(1)]


def test_a_planted_symbolic_link_is_never_followed(lock_dir, tmp_path):
    """Another user of a shared lock folder plants gpu0.lock -> a file of the job's user:
    the job stops naming the link, and neither makes nor locks the file it points to."""
    lock_dir.mkdir()
    missing, existing = tmp_path / "would-be-created", tmp_path / "victim"
    existing.write_text("keep")
    for target in (missing, existing):
        link = lock_dir / "gpu0.lock"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        with pytest.raises(UserError, match=f"GPU lock file {link} is a symbolic link"):
            with devices.acquire_gpus(1, str(lock_dir), total=1):
                pass
    assert not missing.exists()
    assert existing.read_text() == "keep"
    probe = os.open(existing, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nothing holds a lock on it
    os.close(probe)


def test_a_planted_fifo_or_folder_is_refused_without_blocking(lock_dir, monkeypatch):
    lock_dir.mkdir()
    os.mkfifo(lock_dir / "gpu0.lock")
    (lock_dir / "gpu1.lock").mkdir()
    for gpu in ("0", "1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpu)
        with pytest.raises(UserError, match=f"gpu{gpu}.lock is not a regular file"):
            with devices.acquire_gpus(1, str(lock_dir)):
                pass


def test_a_missing_lock_folder_is_made_sticky_and_shared(lock_dir):
    with devices.acquire_gpus(1, str(lock_dir), total=1):
        pass
    assert oct(os.lstat(lock_dir).st_mode & 0o7777) == oct(0o1777)


def test_a_lock_folder_that_is_a_link_or_swappable_is_refused(lock_dir, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    lock_dir.symlink_to(real)
    with pytest.raises(UserError, match=f"GPU lock folder {lock_dir} .* is a symbolic link"):
        with devices.acquire_gpus(1, str(lock_dir), total=1):
            pass
    assert os.listdir(real) == []
    os.chmod(real, 0o777)
    with pytest.raises(UserError, match=f"{real} .* writable by others but not sticky"):
        with devices.acquire_gpus(1, str(real), total=1):
            pass
