"""Whether something else ran on the machine while a benchmark point was measured.

    with LoadWatch() as watch: ...      measure; watch.signals then holds what it saw
    disturbance(signals)                 None, or why the point counts as disturbed

The signals of one interval (all CPU times in seconds):
- wall_s: its length;
- process_cpu_s: the CPU time this process got in it (os.times: user and system, all its
  threads: MXNet's engine and OpenMP threads, DALI's, onnxruntime's);
- machine_cpu_s: the CPU time every CPU of the machine spent busy in it (/proc/stat:
  everything but idle and iowait; steal, time the hypervisor gave to other guests,
  counts as busy);
- cores: the machine's CPUs, which /proc/stat and the load average count;
- load_before, load_after: the 1-minute load average at its start and end.

The rule (disturbance) rests on machine_cpu_s - process_cpu_s: the CPU time that other
processes took while the point ran, over wall_s, is how many cores they kept busy on
average. It is exact for the interval, whatever its length, where the load average lags
by a minute and counts the point's own threads. The load average and the point's own CPU
share only explain the mark to a reader.
"""

import os
import time

# Mean cores that other processes may keep busy while a point runs before the point is
# marked disturbed. Measured on the 2-core machine this project was built on (tiny CPU
# training and inference points of 0.6-3.5 s, each taking about one core): eight points
# alone left others 0.00-0.38 cores (other users' shells, editors and git), eight points
# beside one `python -c 'while 1: pass'` 0.93-1.01. A busy process gets at least half a
# core unless three or more others compete for the same 2 cores, which disturbs the
# point too. On a machine of many cores, background work of half a core marks points as
# well: it shares the CPUs that feed the devices.
OTHERS_CORES_LIMIT = 0.5
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest and
# guest_nice are already in user and nice); idle and iowait are the CPUs' idle time.
IDLE_FIELDS = (3, 4)
PROC_STAT = "/proc/stat"
# The signals a LoadWatch records, each a key of a benchmark point's machine_load.
MACHINE_LOAD_KEYS = (
    "cores",
    "wall_s",
    "process_cpu_s",
    "machine_cpu_s",
    "load_before",
    "load_after",
)


def machine_busy_seconds(path=PROC_STAT):
    """Seconds that all CPUs of the machine together have spent busy since boot, or None
    where /proc/stat is missing (not Linux)."""
    try:
        with open(path) as stat:
            fields = stat.readline().split()
    except FileNotFoundError:
        return None
    ticks = [int(value) for value in fields[1:9]]
    busy = sum(value for index, value in enumerate(ticks) if index not in IDLE_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds():
    times = os.times()
    return times.user + times.system


class LoadWatch:
    """The load signals of the interval of a `with` block (the module docstring lists
    them); watch.signals is a dict ready for a result file."""

    def __enter__(self):
        self._load = os.getloadavg()[0]
        self._machine = machine_busy_seconds()
        self._process = process_cpu_seconds()
        self._wall = time.monotonic()
        self.signals = None
        return self

    def __exit__(self, *exc_info):
        wall = time.monotonic() - self._wall
        machine = machine_busy_seconds()
        self.signals = {
            "cores": os.cpu_count(),
            "wall_s": wall,
            "process_cpu_s": process_cpu_seconds() - self._process,
            "machine_cpu_s": None if machine is None else machine - self._machine,
            "load_before": self._load,
            "load_after": os.getloadavg()[0],
        }
        return False


def others_cores(signals):
    """Mean cores that other processes kept busy during the interval (None without
    /proc/stat). Tick counting (1/100 s per CPU) can make it slightly negative: 0 then."""
    if signals["machine_cpu_s"] is None or signals["wall_s"] <= 0:
        return None
    others = signals["machine_cpu_s"] - signals["process_cpu_s"]
    return max(others, 0.0) / signals["wall_s"]


def disturbance(signals):
    """None for a point measured on a quiet machine; otherwise why it counts as disturbed,
    e.g. "other processes kept 0.99 of 2 cores busy (limit 0.5); load 1.71 before, 1.71
    after; this process got 1.00 CPU-s per wall-s". Without /proc/stat nothing is
    known and nothing is marked."""
    others = others_cores(signals)
    if others is None or others <= OTHERS_CORES_LIMIT:
        return None
    own_share = signals["process_cpu_s"] / signals["wall_s"]
    return (
        f"other processes kept {others:.2f} of {signals['cores']} cores busy "
        f"(limit {OTHERS_CORES_LIMIT}); load {signals['load_before']:.2f} before, "
        f"{signals['load_after']:.2f} after; this process got {own_share:.2f} CPU-s per "
        "wall-s"
    )
