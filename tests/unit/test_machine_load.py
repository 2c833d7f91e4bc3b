"""The rule that marks a benchmark point disturbed, on load signals recorded on the
project's 2-core machine; the signals themselves (a real busy process beside a point) are
checked in stages/test_throughput.py."""

import os

import pytest
from helpers.result_files import BUSY_LOAD, QUIET_LOAD

from resnet_recipe.workflow_support import machine_load


def test_a_point_alone_is_not_marked_and_one_beside_a_busy_process_is_with_the_reason():
    assert machine_load.others_cores(QUIET_LOAD) == pytest.approx(0.23 / 2.55)
    assert machine_load.disturbance(QUIET_LOAD) is None
    assert machine_load.others_cores(BUSY_LOAD) == pytest.approx(2.38 / 2.41)
    assert machine_load.disturbance(BUSY_LOAD) == (
        "other processes kept 0.99 of 2 cores busy (limit 0.5); load 1.71 before, 1.71 "
        "after; this process got 1.00 CPU-s per wall-s"
    )


def test_the_limit_lies_between_the_measured_quiet_and_busy_points():
    # Others' cores: the highest of points measured alone, the lowest beside a busy process.
    for others, marked in ((0.38, False), (0.93, True)):
        signals = {**QUIET_LOAD, "machine_cpu_s": QUIET_LOAD["process_cpu_s"] + others * 2.55}
        assert (machine_load.disturbance(signals) is not None) is marked


def test_without_proc_stat_or_with_ticks_under_the_process_nothing_is_marked(tmp_path):
    assert machine_load.machine_busy_seconds(str(tmp_path / "absent")) is None
    assert machine_load.disturbance({**BUSY_LOAD, "machine_cpu_s": None}) is None
    # Tick counting can put the machine's busy time a little under the process's own.
    assert machine_load.others_cores({**QUIET_LOAD, "machine_cpu_s": 2.60}) == 0.0


def test_busy_seconds_count_every_cpu_state_but_idle_and_iowait(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 5000 400 5 6 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert machine_load.machine_busy_seconds(str(stat)) == pytest.approx(168 / ticks)


def test_a_watch_records_every_signal_of_its_interval():
    with machine_load.LoadWatch() as watch:
        sum(range(10**5))
    assert set(watch.signals) == set(machine_load.MACHINE_LOAD_KEYS)
    assert watch.signals["cores"] == os.cpu_count() and watch.signals["wall_s"] > 0
