"""The lock-file GPU allocator with real concurrent processes: holders get disjoint GPUs,
a waiter proceeds when one frees, a killed holder's GPU becomes free. No GPU is needed: the
GPU total is injected."""

import os
import selectors
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.usefixtures("outside_slurm")


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
