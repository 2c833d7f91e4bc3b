"""Benchmark points on tiny data (real MXNet and DALI on the CPU), what is and is not
timed, the benchmark.py-shaped summary, and the plan after adding one batch size."""

import json
from types import SimpleNamespace

import mxnet as mx
import pytest
import yaml
from helpers import REPO
from helpers.tiny import TINY_NETWORK, TINY_PIPELINE
from helpers.workflow_runs import demo_config, planned_jobs, run_snakemake, write_config

from resnet_recipe.benchmarking import throughput
from resnet_recipe.workflow_support.settings import BenchInfer, BenchTrain, TrainingRun

NHWC_NETWORK = TINY_NETWORK.replace(layout={"float16": "NHWC", "float32": "NHWC"})

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
    "epoch_seconds",
    "epoch_images_per_s",
    "images_per_s",
    "val_epoch_images_per_s",
    "val_images_per_s",
    "latency_ms",
    "network",
    "machine",
    "versions",
    "provenance",
}
INFER_KEYS = {
    "kind",
    "dtype",
    "gpus",
    "device",
    "batch_size",
    "data",
    "input_backend",
    "image_size",
    "layout",
    "weights",
    "iterations",
    "epochs",
    "warmup_epochs",
    "throughput_method",
    "epoch_batch_seconds",
    "epoch_images_per_s",
    "images_per_s",
    "latency_method",
    "latency_iterations",
    "latency_images_per_s",
    "latency_ms",
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
INFER_BENCH = BenchInfer(
    data="dali", iterations=4, epochs=3, warmup_epochs=1, latency_iterations=5, gpus=0
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


def epoch_clock(durations, val_durations):
    """A clock whose readings make the training epochs last `durations` seconds and the
    validation pass after each `val_durations` from its first batch's end to its last
    (time_training_epochs and timing.time_batch_ends read it exactly there)."""
    readings = []
    now = 0.0
    for seconds, val_seconds in zip(durations, val_durations, strict=True):
        readings += [now, now + seconds, now + seconds, now + seconds + val_seconds]
        now += seconds + val_seconds
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
    clock = epoch_clock([10.0, 1.0, 2.0], [5.0, 0.5, 0.25])
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
    # 8 images per epoch in 10, 1 and 2 s: the slow first (warmup) epoch is left out.
    assert result["epoch_images_per_s"] == [0.8, 8.0, 4.0]
    assert result["images_per_s"] == pytest.approx(16 / 3)
    assert result["latency_ms"] == {"mean": pytest.approx(750.0)}  # 3 s over 4 iterations
    # Validation after each epoch, as the original's val.total_ips: 2 batches of 4 images,
    # the first left out, so 4 images in 5, 0.5 and 0.25 s; warmup left out.
    assert result["val_epoch_images_per_s"] == [0.8, 8.0, 16.0]
    assert result["val_images_per_s"] == pytest.approx(2 / (1 / 8 + 1 / 16))
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
    assert result["epoch_images_per_s"][1] == pytest.approx(8 / result["epoch_seconds"][1])


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
    # Throughput epochs: one reading after each epoch's first batch and one after its
    # closing wait. Latency pass: its start and end, the ask and the ready of each batch
    # and the ask that finds the batches over.
    epochs, waited = INFER_BENCH.epochs, INFER_BENCH.latency_iterations
    assert len(readings) == 2 * epochs + 3 + 2 * waited
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


# What every point carries beside its own numbers (results.BENCH_TRAIN / BENCH_INFER).
POINT_SETUP = {
    "network": {"depth": 50, "version": "1.5"},
    "layout": "NCHW",
    "image_size": 224,
    "input_backend": "dali-gpu",
    "machine": {"hostname": "test-host"},
}


def train_point(dtype, gpus, batch, rate):
    return {
        "kind": "train",
        "dtype": dtype,
        "gpus": gpus,
        "batch_per_device": batch,
        "global_batch": batch * max(gpus, 1),
        "images_per_s": rate,
        "val_images_per_s": 3 * rate,
        **POINT_SETUP,
    }


def infer_point(dtype, batch, rate, mean_ms):
    latency = {"mean": mean_ms, "p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0}
    return {
        "kind": "infer",
        "dtype": dtype,
        "gpus": 1,
        "batch_size": batch,
        "images_per_s": rate,
        "epoch_images_per_s": [rate],
        "latency_images_per_s": batch / mean_ms * 1000,
        "latency_ms": latency,
        **POINT_SETUP,
    }


def test_summary_has_the_benchmark_py_report_shape_per_dtype(tmp_path):
    points = {
        "train": [
            train_point("float32", 4, 96, 4000.0),
            train_point("float32", 1, 96, 1000.0),
            train_point("float16", 1, 208, 2000.0),
        ],
        "infer": [infer_point("float32", 1, 400.0, 2.5), infer_point("float32", 8, 2000.0, 4.0)],
    }
    files = {}
    for kind, kind_points in points.items():
        files[kind] = []
        for number, point in enumerate(kind_points):
            path = tmp_path / f"{kind}{number}.json"
            path.write_text(json.dumps(point))
            files[kind].append(str(path))
    out = {kind: tmp_path / "bench_summary" / f"{kind}.json" for kind in points}
    throughput.summarize(files["train"], files["infer"], str(out["train"]), str(out["infer"]))
    train = json.loads(out["train"].read_text())
    infer = json.loads(out["infer"].read_text())

    assert set(train) == {"float16", "float32"} and set(infer) == {"float32"}
    assert (
        train["float32"].pop("provenance")["settings_digest"]
        != (train["float16"]["provenance"]["settings_digest"])
    )
    assert train["float32"] == {
        "model": "resnet50_v1.5",
        "ngpus": [1, 4],
        "bs": [96],
        "metric_keys": ["train.total_ips", "val.total_ips"],
        "metrics": {
            "1": {"96": {"train.total_ips": 1000.0, "val.total_ips": 3000.0}},
            "4": {"96": {"train.total_ips": 4000.0, "val.total_ips": 12000.0}},
        },
    }
    assert train["float16"]["metrics"] == {
        "1": {"208": {"train.total_ips": 2000.0, "val.total_ips": 6000.0}}
    }
    report = infer["float32"]
    assert report["ngpus"] == [1] and report["bs"] == [1, 8]
    assert report["metric_keys"] == [
        "val.total_ips",
        "val.ips",
        "val.latency_avg",
        "val.latency_50",
        "val.latency_90",
        "val.latency_95",
        "val.latency_99",
        "val.latency_100",
    ]
    # Read the way the original's tools read it: every metric of every (ngpus, bs).
    for report in (*train.values(), *infer.values()):
        for gpus in report["ngpus"]:
            for batch in report["bs"]:
                assert set(report["metrics"][str(gpus)][str(batch)]) == set(report["metric_keys"])
    assert infer["float32"]["metrics"]["1"]["8"]["val.total_ips"] == 2000.0
    assert infer["float32"]["metrics"]["1"]["8"]["val.ips"] == pytest.approx(2000.0)
    assert infer["float32"]["metrics"]["1"]["8"]["val.latency_avg"] == pytest.approx(0.004)
    assert infer["float32"]["metrics"]["1"]["1"]["val.latency_100"] == pytest.approx(0.005)


def test_summary_refuses_two_files_of_one_point(tmp_path):
    points = [train_point("float32", 1, 96, 1000.0), train_point("float32", 1, 96, 900.0)]
    with pytest.raises(ValueError, match="two train benchmark points"):
        throughput.benchmark_report(points, "train")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "train"}))
    missing = r"bad.json: missing field\(s\) dtype, gpus, batch_per_device, global_batch, network"
    with pytest.raises(ValueError, match=missing + r".* \(training benchmark point\)"):
        throughput.summarize([str(bad)], [], str(tmp_path / "t.json"), str(tmp_path / "i.json"))


def test_schema_defaults_are_the_original_benchmark_defaults():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    sections = schema["properties"]["benchmark"]["properties"]

    def defaults(kind, leave_out):
        properties = sections[kind]["properties"]
        return {k: v["default"] for k, v in properties.items() if k not in leave_out}

    assert defaults("train", ("points",)) == BenchTrain().to_config()
    assert BenchTrain().num_examples == {"float16": 25600, "float32": 12800}
    assert defaults("infer", ("batch_sizes",)) == BenchInfer().to_config()


# ---------------------------------------------------------------- the plan


def touch_finished_tree(workdir):
    """Make every output of the demo plan exist and be up to date, with Snakemake's
    provenance records, without running anything: create each planned output (folders
    for the outputs without an extension: the demo tree and the training runs), then
    let `snakemake --touch` order their times and record their parameters and code."""
    summary = run_snakemake(workdir, "--summary").stdout.splitlines()
    header = summary.index(next(line for line in summary if line.startswith("output_file")))
    for line in summary[header + 1 :]:
        path = workdir / line.split("\t")[0]
        if "." in path.name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    run_snakemake(workdir, "--touch", "--cores", "1")


@pytest.fixture(scope="module")
def finished_tree(tmp_path_factory):
    from helpers.workflow_runs import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("finished") / "workflow-copy")
    touch_finished_tree(workdir)
    assert planned_jobs(workdir) == {}
    return workdir


def plan_with(workdir, edit):
    config = demo_config()
    edit(config)
    write_config(workdir / "edited.yaml", config)
    jobs = planned_jobs(workdir, "--configfile", "edited.yaml")
    listing = run_snakemake(workdir, "-n", "--configfile", "edited.yaml").stdout
    return jobs, listing


@pytest.mark.parametrize(
    "kind, edit, new_output",
    [
        (
            "bench_infer",
            lambda c: c["benchmark"]["infer"]["batch_sizes"]["float32"].append(64),
            "results/bench_infer/float32/b64.json",
        ),
        (
            "bench_train",
            lambda c: c["benchmark"]["train"]["points"]["float32"]["batch_sizes"].append(8),
            "results/bench_train/float32/n0_b8.json",
        ),
    ],
    ids=["inference", "training"],
)
def test_one_more_batch_size_plans_exactly_one_new_job(finished_tree, kind, edit, new_output):
    jobs, listing = plan_with(finished_tree, edit)
    # A float32 inference batch size is also measured in onnxruntime (onnx.benchmark).
    onnx_point = {"bench_infer_onnx": 1} if kind == "bench_infer" else {}
    assert jobs == {kind: 1, **onnx_point, "bench_summary": 1, "report": 1, "all": 1}
    assert new_output in listing


def test_training_benchmarks_follow_the_configs_training_defaults(finished_tree):
    # bench_train runs training.defaults: a changed momentum reruns every training point;
    # a setting each point sets itself (cpu_contexts), or one that only changes the log,
    # leaves the training points alone.
    points = demo_config()["benchmark"]["train"]["points"]
    count = sum(len(p["gpus"]) * len(p["batch_sizes"]) for p in points.values())
    jobs, _ = plan_with(finished_tree, lambda c: c["training"]["defaults"].update(momentum=0.8))
    assert jobs["bench_train"] == count and jobs["train"] == len(demo_config()["training"]["runs"])
    edit = {"cpu_contexts": 2, "log_interval": 3}
    jobs, _ = plan_with(finished_tree, lambda c: c["training"]["defaults"].update(edit))
    assert "bench_train" not in jobs and jobs["train"] >= 1


def test_the_finished_tree_tracks_parameters(finished_tree):
    # The control for the test above: a setting every inference point reads reruns them
    # all, so "one new job" is not an artefact of a tree without provenance records.
    jobs, _ = plan_with(finished_tree, lambda c: c["benchmark"]["infer"].update(iterations=21))
    points = len(demo_config()["benchmark"]["infer"]["batch_sizes"]["float32"])
    expected = {"bench_infer": points, "bench_infer_onnx": points, "bench_summary": 1}
    assert jobs == {**expected, "report": 1, "all": 1}
