"""Benchmark points on tiny data (real MXNet and DALI on the CPU) and what is and is not
timed. Their summary: unit/test_benchmark_summary.py; the plan after adding a batch size:
workflow/test_benchmark_plans.py."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import pytest
from helpers.dllogger_lines import read_checked, read_steps
from helpers.tiny import INFER_BENCH, INFER_KEYS, NHWC_NETWORK, TINY_NETWORK, TINY_PIPELINE

from resnet_recipe.benchmarking import throughput
from resnet_recipe.workflow_support import machine_load
from resnet_recipe.workflow_support.settings import BenchTrain, TrainingRun

TRAIN_KEYS = {
    "kind",
    "dtype",
    "gpus",
    "nodes",
    "devices",
    "batch_per_device",
    "global_batch",
    "data",
    "input_backend",
    "image_size",
    "layout",
    "iterations",
    "epochs",
    "warmup_epochs",
    "num_examples",
    "settings",
    "throughput_method",
    "epoch_batch_seconds",
    "epoch_images_per_s",
    "images_per_s",
    "wall_method",
    "epoch_seconds",
    "wall_epoch_images_per_s",
    "wall_images_per_s",
    "val_epoch_images_per_s",
    "val_images_per_s",
    "latency_ms",
    "machine_load",
    "network",
    "machine",
    "versions",
    "provenance",
}
TRAIN_BENCH = BenchTrain(
    data="dali",
    iterations=2,
    epochs=3,
    warmup_epochs=1,
    num_examples={"float16": 64, "float32": 32},
)


@pytest.fixture(scope="module")
def tiny(tiny_data, tmp_path_factory):
    shared = dict(
        classes_tsv=tiny_data["classes_tsv"],
        network=TINY_NETWORK,
        pipeline=TINY_PIPELINE,
        lock_dir=str(tmp_path_factory.mktemp("bench") / "locks"),
    )
    return SimpleNamespace(
        train=throughput.BenchSetup(
            rec=tiny_data["train_rec"],
            idx=tiny_data["train_idx"],
            val_rec=tiny_data["val_rec"],
            val_idx=tiny_data["val_idx"],
            **shared,
        ),
        val=throughput.BenchSetup(rec=tiny_data["val_rec"], idx=tiny_data["val_idx"], **shared),
    )


def epoch_clock(epochs, val_durations):
    """A clock whose readings make the training epochs last (wall seconds, seconds from
    the end of the first batch to the end of the epoch) of `epochs`, and the validation
    pass after each `val_durations` from its first batch's end to its last (timing.time_epoch
    reads it before the first batch, after it and at the end of every pass)."""
    readings = []
    now = 0.0
    for (seconds, after_first), val_seconds in zip(epochs, val_durations, strict=True):
        end = now + seconds
        readings += [now, end - after_first, end, end, end, end + val_seconds]
        now = end + val_seconds
    return iter(readings).__next__


def bench_train(tiny, path, clock=None, **overrides):
    arguments = {
        "dtype": "float32",
        "gpus": 0,
        "batch_per_device": 4,
        "bench_settings": TRAIN_BENCH,
        "run_settings": TrainingRun(),
        **overrides,
    }
    if clock is not None:
        arguments["clock"] = clock
    return throughput.bench_train(str(path), tiny.train, **arguments)


@pytest.mark.parametrize("data", ["dali", "synthetic"])
def test_training_point_json_and_warmup_excluded(tiny, tmp_path, data):
    path = tmp_path / "bench_train" / "float32" / "n0_b4.json"
    bench = TRAIN_BENCH.replace(data=data)
    clock = epoch_clock([(10.0, 4.0), (1.0, 0.5), (2.0, 0.25)], [5.0, 0.5, 0.25])
    returned = bench_train(tiny, path, clock, bench_settings=bench)
    result = json.loads(path.read_text())
    assert result == returned and set(result) == TRAIN_KEYS
    assert (result["kind"], result["dtype"], result["gpus"], result["data"]) == (
        "train",
        "float32",
        0,
        data,
    )
    assert result["input_backend"] == ("synthetic" if data == "synthetic" else "dali-cpu")
    assert (result["batch_per_device"], result["global_batch"], result["num_examples"]) == (
        4,
        4,
        32,
    )
    assert (result["iterations"], result["epochs"], result["warmup_epochs"]) == (2, 3, 1)
    # The original's measure: 2 batches of 4 images per epoch, the first left out, so 4
    # images in 4, 0.5 and 0.25 s; the slow first (warmup) epoch is left out.
    assert result["epoch_batch_seconds"] == [4.0, 0.5, 0.25]
    assert result["epoch_images_per_s"] == [1.0, 8.0, 16.0]
    assert result["images_per_s"] == pytest.approx(2 / (1 / 8 + 1 / 16))
    assert "not waited for" in result["throughput_method"]
    # The wall clock's: 8 images per epoch in 10, 1 and 2 s.
    assert result["epoch_seconds"] == [10.0, 1.0, 2.0]
    assert result["wall_epoch_images_per_s"] == [0.8, 8.0, 4.0]
    assert result["wall_images_per_s"] == pytest.approx(16 / 3)
    assert "wall time" in result["wall_method"]
    assert result["latency_ms"] == {"mean": pytest.approx(750.0)}  # 3 s over 4 iterations
    # Validation after each epoch, as the original's val.total_ips: 2 batches of 4 images,
    # the first left out, so 4 images in 5, 0.5 and 0.25 s; warmup left out.
    assert result["val_epoch_images_per_s"] == [0.8, 8.0, 16.0]
    assert result["val_images_per_s"] == pytest.approx(2 / (1 / 8 + 1 / 16))
    # The DLLogger log beside it: each epoch's rates, then the point's.
    steps = read_steps(path.with_name("n0_b4.dllogger.json"))
    assert list(steps) == [(0,), (1,), (2,), ()]
    assert [steps[(e,)][0]["train.ips"] for e in range(3)] == result["epoch_images_per_s"]
    assert [steps[(e,)][0]["val.ips"] for e in range(3)] == result["val_epoch_images_per_s"]
    summary = {"train.ips": result["images_per_s"], "val.ips": result["val_images_per_s"]}
    assert steps[()] == [summary]
    assert result["layout"] == "NCHW"
    assert result["versions"]["mxnet"] == mx.__version__


def test_training_point_runs_the_given_run_settings_with_its_own_point(tiny, tmp_path):
    # The config's training.defaults (here: not the original recipe's momentum, schedule
    # and seed) are what the loop runs; the point sets GPUs, batch, dtype and contexts.
    defaults = TrainingRun(gpus=8, batch_per_device=208, momentum=0.5, lr_schedule="cosine")
    result = bench_train(tiny, tmp_path / "point.json", run_settings=defaults.replace(seed=7))
    expected = defaults.replace(gpus=0, batch_per_device=4, dtype="float32", seed=7)
    assert result["settings"] == expected.to_config()
    assert result["settings"]["momentum"] == 0.5 and result["settings"]["cpu_contexts"] == 1


def test_training_point_with_the_real_clock(tiny, tmp_path):
    result = bench_train(
        tiny, tmp_path / "point.json", bench_settings=TRAIN_BENCH.replace(epochs=2)
    )
    assert len(result["epoch_images_per_s"]) == len(result["epoch_seconds"]) == 2
    assert result["images_per_s"] == pytest.approx(result["epoch_images_per_s"][1])
    assert result["epoch_images_per_s"][1] == pytest.approx(4 / result["epoch_batch_seconds"][1])
    assert result["wall_images_per_s"] == pytest.approx(8 / result["epoch_seconds"][1])
    # The interval after the first batch lies inside the epoch's wall time.
    assert result["epoch_batch_seconds"][1] < result["epoch_seconds"][1]


def test_float16_training_benchmark_on_the_cpu_stops_with_the_reason(tiny, tmp_path):
    path = tmp_path / "n0_b4.json"
    with pytest.raises(ValueError, match="float16 n0 b4: float16 training needs GPUs"):
        bench_train(tiny, path, dtype="float16")
    assert not path.exists()


def test_inference_point_holds_unwaited_throughput_and_waited_latencies(tiny, tmp_path):
    path = tmp_path / "bench_infer" / "float32" / "b8.json"
    readings = []

    def clock():
        readings.append(len(readings))
        return 0.5 * len(readings)

    returned = throughput.bench_infer(
        str(path), tiny.val, dtype="float32", batch_size=8, bench_settings=INFER_BENCH, clock=clock
    )
    result = json.loads(path.read_text())
    assert result == returned and set(result) == INFER_KEYS
    # Throughput epochs: one reading at each epoch's start, one after its first batch and
    # one after its closing wait. Latency pass: its start and end, the ask and the ready of
    # each batch and the ask that finds the batches over.
    epochs, waited = INFER_BENCH.epochs, INFER_BENCH.latency_iterations
    assert len(readings) == 3 * epochs + 3 + 2 * waited
    assert (result["kind"], result["gpus"], result["device"], result["data"]) == (
        "infer",
        0,
        "cpu(0)",
        "dali",
    )
    assert (result["iterations"], result["epochs"], result["warmup_epochs"]) == (4, 3, 1)
    # Each epoch: one tick (0.5 s) over the 3 batches after the first; 8 images each.
    assert result["epoch_batch_seconds"] == [pytest.approx(0.5 / 3)] * epochs
    assert result["epoch_images_per_s"] == [pytest.approx(48.0)] * epochs
    assert result["images_per_s"] == pytest.approx(48.0)
    assert "not waited for" in result["throughput_method"]
    # Latency: ask to ready is one tick for each of the 5 waited batches.
    assert result["latency_iterations"] == waited
    assert set(result["latency_ms"]) == {"mean", "p50", "p90", "p95", "p99", "max"}
    assert result["latency_ms"]["mean"] == pytest.approx(500.0)
    assert result["latency_images_per_s"] == pytest.approx(16.0)  # 8 images in 0.5 s
    logs, units = read_checked(path.with_name("b8.dllogger.json"))
    assert [entry["step"] for entry in logs] == [[0], []]
    assert units["val.ips"] == {"unit": "images/s"}
    assert logs[0]["data"]["val.ips"] == pytest.approx(16.0)
    assert logs[0]["data"]["val.latency_avg"] == pytest.approx(0.5)
    assert "random initialisation" in result["weights"] and result["layout"] == "NCHW"


def test_inference_point_in_nhwc_reads_padded_nhwc_batches(tiny, tmp_path):
    setup = tiny.val.__class__(**{**tiny.val.__dict__, "network": NHWC_NETWORK})
    result = throughput.bench_infer(
        str(tmp_path / "b4.json"),
        setup,
        dtype="float32",
        batch_size=4,
        bench_settings=INFER_BENCH.replace(epochs=2, latency_iterations=2),
    )
    assert result["layout"] == "NHWC" and result["images_per_s"] > 0


def cpu_seconds_of(pid):
    """CPU time (user and system) process `pid` has had, from /proc/PID/stat (utime and
    stime are the 12th and 13th fields after the command's closing parenthesis)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def busy_process():
    """A `python -c 'while 1: pass'` beside the test, running once it has used CPU."""
    process = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        while cpu_seconds_of(process.pid) < 0.02:
            time.sleep(0.01)
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_busy_process_beside_a_point_shows_in_its_load_signals_and_marks_it(busy_process):
    # A point that waits, as one on a GPU waits for its device: the busy process is always
    # ready to run, so whenever it does not run every core runs some other process. The
    # others' CPU time is then at least the wall time whatever else loads the machine
    # (the CI machine's other test worker included): at least one core, above the limit.
    with machine_load.LoadWatch() as watch:
        started = cpu_seconds_of(busy_process.pid)
        time.sleep(1.0)
        busy = cpu_seconds_of(busy_process.pid) - started
    signals = watch.signals
    others = signals["machine_cpu_s"] - signals["process_cpu_s"]
    tick = 1 / os.sysconf("SC_CLK_TCK")
    # Every CPU-second the busy process got inside the interval is among the others';
    # both counts are whole clock ticks of each CPU.
    assert busy > 0 and others >= busy - 2 * signals["cores"] * tick
    reason = machine_load.disturbance(signals)
    assert reason is not None and reason.startswith("other processes kept")


# ---------------------------------------------------------------- the plan
