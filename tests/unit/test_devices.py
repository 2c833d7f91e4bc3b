"""GPU discovery, the lock-file GPU allocator (with real concurrent processes), MXNet
contexts and the machine description. No GPU is needed: the GPU total is injected."""

import json
import os
import selectors
import signal
import subprocess
import sys

import pytest

from resnet_recipe.workflow_support import devices

# A job holding GPUs: prints its CUDA_VISIBLE_DEVICES, then holds until stdin closes.
HOLDER = """
import logging, os, sys
from resnet_recipe.workflow_support.devices import acquire_gpus
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
count, total, lock_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with acquire_gpus(count, lock_dir, total=total, poll_seconds=0.05):
    print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    sys.stdin.readline()
"""

# Guards against a hung test, not a performance bound.
HANG_GUARD_SECONDS = 30


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def start_holder(count, total, lock_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count), str(total), str(lock_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(stream, containing=""):
    """Next line of a child's output that contains `containing`."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            if not selector.select(timeout=HANG_GUARD_SECONDS):
                raise AssertionError(f"no line containing {containing!r} in time")
            line = stream.readline()
            if not line:
                raise AssertionError(f"output ended before a line containing {containing!r}")
            if containing in line:
                return line.strip()


def held_ids(holder):
    return read_line(holder.stdout).split(",")


def release(holder):
    holder.communicate("\n", timeout=HANG_GUARD_SECONDS)
    assert holder.returncode == 0


@pytest.fixture
def lock_dir(tmp_path):
    return tmp_path / "locks"


def test_concurrent_holders_get_disjoint_gpus_and_a_waiting_one_proceeds(lock_dir):
    holders = [start_holder(count, 4, lock_dir) for count in (2, 1, 1)]
    try:
        taken = [held_ids(holder) for holder in holders]
        ids = [gpu for ids in taken for gpu in ids]
        assert sorted(ids) == ["0", "1", "2", "3"]
        assert [len(ids) for ids in taken] == [2, 1, 1]

        waiting = start_holder(1, 4, lock_dir)
        holders.append(waiting)
        assert "free now none" in read_line(waiting.stderr, "waiting for 1 free GPUs")
        release(holders[1])
        assert held_ids(waiting) == taken[1]
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_gpu_of_a_killed_holder_becomes_free(lock_dir):
    first = start_holder(1, 1, lock_dir)
    assert held_ids(first) == ["0"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = start_holder(1, 1, lock_dir)
    try:
        assert held_ids(second) == ["0"]
    finally:
        release(second)


def test_exports_cuda_visible_devices_and_restores_it(lock_dir):
    with devices.acquire_gpus(2, lock_dir, total=3) as ids:
        assert ids == ["0", "1"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert sorted(os.listdir(lock_dir)) == ["gpu0.lock", "gpu1.lock"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_cpu_takes_nothing(lock_dir):
    with devices.acquire_gpus(0, lock_dir, total=2) as ids:
        assert ids == []
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not lock_dir.exists()


def test_more_gpus_than_exist_is_a_clear_error(lock_dir):
    with pytest.raises(RuntimeError, match=r"needs 3 GPUs but this machine has 2 \(0,1\)"):
        with devices.acquire_gpus(3, lock_dir, total=2):
            pass
    with pytest.raises(RuntimeError, match="has none.*gpus: 0 to run on the CPU"):
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
    with pytest.raises(RuntimeError, match="needs 3 GPUs but SLURM job 42 was given 2"):
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
    with pytest.raises(RuntimeError, match=r"needs 3 GPUs but CUDA_VISIBLE_DEVICES leaves 2"):
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


def test_describe_machine_without_snakemake():
    script = (
        "import json, sys\n"
        "from resnet_recipe.workflow_support.devices import describe_machine\n"
        "print(json.dumps(describe_machine()))\n"
        "assert 'snakemake' not in sys.modules and 'mxnet' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    machine = json.loads(done.stdout)
    assert machine["logical_cores"] == os.cpu_count()
    assert machine["hostname"] and machine["cpu_model"]
    assert set(machine["cpu_flags"]) <= set(devices.KERNEL_CPU_FLAGS)
    with open("/proc/cpuinfo") as cpuinfo:
        assert ("avx2" in cpuinfo.read()) == ("avx2" in machine["cpu_flags"])
    assert machine["onednn_isa"]  # e.g. "Intel AVX2", as oneDNN names it
    assert isinstance(machine["gpus"], list)
    assert machine["versions"]["mxnet"] == "1.9.1"
    assert machine["versions"]["nvidia-dali"] == "1.34.0"
    assert machine["versions"]["numpy"] == "1.23.5"
    assert machine["versions"]["python"].startswith("3.11")
