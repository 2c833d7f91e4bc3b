"""The benchmark summary in benchmark.py's report shape, from benchmark point files; the
schema's benchmark defaults are the original's."""

import json

import pytest
import yaml
from helpers import REPO
from helpers.result_files import QUIET_LOAD

from resnet_recipe.benchmarking import throughput
from resnet_recipe.workflow_support.settings import BenchInfer, BenchTrain

# What every point carries beside its own numbers (results.BENCH_TRAIN / BENCH_INFER).
POINT_SETUP = {
    "network": {"depth": 50, "version": "1.5"},
    "layout": "NCHW",
    "image_size": 224,
    "input_backend": "dali-gpu",
    "machine": {"hostname": "test-host"},
    "machine_load": QUIET_LOAD,
}


def train_point(dtype, gpus, batch, rate):
    return {
        "kind": "train",
        "dtype": dtype,
        "gpus": gpus,
        "batch_per_device": batch,
        "global_batch": batch * max(gpus, 1),
        "images_per_s": rate,
        "wall_images_per_s": 0.9 * rate,
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
    methods = train["float32"].pop("metric_methods")
    assert train["float32"] == {
        "model": "resnet50",
        "ngpus": [1, 4],
        "bs": [96],
        "metric_keys": ["train.total_ips", "val.total_ips", "train.wall_ips"],
        "metrics": {
            "1": {
                "96": {"train.total_ips": 1000.0, "val.total_ips": 3000.0, "train.wall_ips": 900.0}
            },
            "4": {
                "96": {
                    "train.total_ips": 4000.0,
                    "val.total_ips": 12000.0,
                    "train.wall_ips": 3600.0,
                }
            },
        },
    }
    # Each metric labelled with how it was measured: the original's unwaited batch ends,
    # or the epochs' wall time.
    assert set(methods) == set(train["float32"]["metric_keys"])
    assert (
        "batch ends" in methods["train.total_ips"]
        and "fit.py L379-413" in methods["train.total_ips"]
    )
    assert (
        "wall time" in methods["train.wall_ips"]
        and "not the original's" in methods["train.wall_ips"]
    )
    assert train["float16"]["metrics"] == {
        "1": {"208": {"train.total_ips": 2000.0, "val.total_ips": 6000.0, "train.wall_ips": 1800.0}}
    }
    report = infer["float32"]
    assert report["ngpus"] == [1] and report["bs"] == [1, 8]
    assert set(report["metric_methods"]) == set(report["metric_keys"])
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
