"""The report: tables from result files written to the file contracts, partial inputs,
the graphs, CSV and Markdown content (Snakemake's HTML report: workflow/test_report_rule.py)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.result_files import (
    BENCH_INFER,
    BENCH_TRAIN,
    BUSY_LOAD,
    DEMO_SETUP,
    REFERENCE_DIR,
    RUNS,
    VERSIONS,
    build,
    write_bench_infer,
    write_bench_train,
    write_json,
    write_parity,
    write_results,
    write_run,
    write_score,
)
from matplotlib.figure import Figure
from PIL import Image

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.report import plots
from resnet_recipe.report.build import ReportOutputs, build_report
from resnet_recipe.report.experiment import REFERENCE_HARDWARE, REFERENCE_LABEL, setup_suffix
from resnet_recipe.report.inputs import (
    read_bench,
    read_run,
    read_runs,
    read_scores,
    reference_files,
)
from resnet_recipe.report.origins import ORIGIN_NOTE
from resnet_recipe.report.tables import epoch_metrics
from resnet_recipe.workflow_support import results


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    return build(tmp_path_factory.mktemp("full"))


def row(table, **where):
    match = table
    for column, value in where.items():
        match = match[match[column] == value]
    assert len(match) == 1, where
    return match.iloc[0]


def test_training_table_speedup_weak_scaling_and_reference(full_report):
    table = pd.read_csv(full_report.training_csv)
    assert len(table) == len(BENCH_TRAIN)
    # Same batch per GPU in both precisions: 1300 / 400.
    same_batch = row(table, dtype="float16", gpus=1, batch_per_device=96)
    assert same_batch["fp16_speedup"] == pytest.approx(3.25)
    assert same_batch["speedup_fp32_batch"] == 96
    # No float32 at batch 208: compared with float32's largest batch at 1 and 4 GPUs.
    one_gpu = row(table, dtype="float16", gpus=1, batch_per_device=208)
    assert one_gpu["fp16_speedup"] == pytest.approx(1400 / 400)
    assert one_gpu["speedup_fp32_batch"] == 96
    assert one_gpu["weak_scaling"] == pytest.approx(1.0)
    four = row(table, dtype="float16", gpus=4, batch_per_device=208)
    assert four["fp16_speedup"] == pytest.approx(5250 / 1500)
    assert four["weak_scaling"] == pytest.approx(5250 / 1400)
    # No float32 point at 8 GPUs: no speedup; scaling against float16's own 1-GPU point.
    eight = row(table, dtype="float16", gpus=8, batch_per_device=208)
    assert math.isnan(eight["fp16_speedup"])
    assert eight["weak_scaling"] == pytest.approx(10080 / 1400)
    assert eight["reference_images_per_s"] == pytest.approx(10263.2)
    assert eight["images_per_s_ratio"] == pytest.approx(10080 / 10263.2)
    assert eight["reference_weak_scaling"] == pytest.approx(10263.2 / 1442.6)
    assert "V100" in eight["reference_hardware"]
    assert row(table, dtype="float16", gpus=1, batch_per_device=208)[
        "reference_fp16_speedup"
    ] == pytest.approx(1442.6 / 400.2)
    assert row(table, dtype="float32", gpus=4, batch_per_device=96)[
        "weak_scaling"
    ] == pytest.approx(1500 / 400)
    # The CPU point: labelled, no weak scaling, no reference.
    cpu = row(table, gpus=0)
    assert cpu["device"] == "CPU" and cpu["image_size"] == 32 and cpu["input"] == "dali-cpu"
    assert math.isnan(cpu["weak_scaling"]) and math.isnan(cpu["reference_images_per_s"])
    assert math.isnan(cpu["images_per_s_ratio"]) and pd.isna(cpu["reference_hardware"])
    # float32 rows carry no FP16 speedup.
    assert table.loc[table["dtype"] == "float32", "fp16_speedup"].isna().all()


def test_training_table_and_graph_show_nodes_x_gpus_with_ideal_scaling(tmp_path):
    """A point on 2 nodes x 4 GPUs: labelled so, weak scaling against the 1-GPU point,
    ideal scaling 8, and no reference (the reference ran 4 GPUs on one node)."""
    inputs = write_results(tmp_path / "results", bench_train={})
    points = [("float16", 1, 208, 1400.0, 1), ("float16", 4, 208, 5250.0, 1)]
    points += [("float16", 4, 208, 9800.0, 2), ("float32", 0, 16, 20.0, None)]
    inputs["bench_train_files"] = [
        write_bench_train(tmp_path / "results", *point[:4], nodes=point[4]) for point in points
    ]
    outputs = ReportOutputs.in_folder(str(tmp_path / "results" / "report"))
    build_report(**inputs, **reference_files(REFERENCE_DIR), outputs=outputs)
    table = pd.read_csv(outputs.training_csv)
    two_nodes = row(table, gpus=4, nodes=2)
    assert two_nodes["device"] == "2 nodes x 4 GPUs" and two_nodes["global_batch"] == 1664
    assert two_nodes["weak_scaling"] == pytest.approx(9800 / 1400)
    assert two_nodes["ideal_scaling"] == 8
    assert math.isnan(two_nodes["reference_images_per_s"])
    one_node = row(table, gpus=4, nodes=1)
    assert one_node["device"] == "4 GPUs" and one_node["ideal_scaling"] == 4
    assert one_node["reference_images_per_s"] > 0
    cpu = row(table, gpus=0)
    assert cpu["nodes"] == 1 and pd.isna(cpu["ideal_scaling"])
    markdown = Path(outputs.markdown).read_text()
    assert "| 2 nodes x 4 GPUs |" in markdown and "ideal scaling" in markdown
    assert_png(outputs.training_scaling_png)


def test_accuracy_table_in_percent_with_reference_and_ratio(full_report):
    table = pd.read_csv(full_report.accuracy_csv)
    assert list(table["run"]) == ["fp16_8gpu", "cpu_fp32", "fp32_1gpu"]
    fp16 = row(table, run="fp16_8gpu")
    assert fp16["top1_percent"] == pytest.approx(76.49)
    assert fp16["top5_percent"] == pytest.approx(93.1)
    assert fp16["reference_top1_percent"] == pytest.approx(76.490)
    assert fp16["top1_ratio"] == pytest.approx(1.0)
    assert fp16["training_time_h"] == pytest.approx(3.0)
    assert fp16["training_time_ratio"] == pytest.approx(3.0 / 3.3)
    fp32 = row(table, run="fp32_1gpu")
    assert fp32["top1_ratio"] == pytest.approx(75.0 / 76.462)
    assert fp32["reference_training_time_h"] == pytest.approx(82.0)
    cpu = row(table, run="cpu_fp32")
    assert cpu["device"] == "CPU" and cpu["top1_percent"] == pytest.approx(90.0)
    assert (cpu["image_size"], cpu["classes"], cpu["epochs"]) == (32, 10, 30)
    assert math.isnan(cpu["reference_top1_percent"]) and math.isnan(cpu["top1_ratio"])
    assert cpu["training_time_h"] == pytest.approx(300 / 3600)


def test_inference_table_joins_reference_by_dtype_and_batch_on_one_gpu(full_report):
    table = pd.read_csv(full_report.inference_csv)
    assert len(table) == len(BENCH_INFER)
    b208 = row(table, dtype="float16", batch_size=208)
    assert b208["reference_images_per_s"] == pytest.approx(3832)
    assert b208["images_per_s_ratio"] == pytest.approx(3800 / 3832)
    # Latency comes from the waited pass (0.9 of the unwaited images/s in these files).
    assert b208["latency_mean_ms"] == pytest.approx(1000 * 208 / (0.9 * 3800))
    assert b208["latency_images_per_s"] == pytest.approx(0.9 * 3800)
    assert b208["layout"] == "NCHW"
    assert b208["latency_p99_ms"] == pytest.approx(1.5 * 1000 * 208 / (0.9 * 3800))
    assert row(table, dtype="float32", batch_size=8)["images_per_s_ratio"] == pytest.approx(
        800 / 824
    )
    # Every latency statistic of the points but the slowest batch, in order.
    latency_columns = [name for name in table.columns if name.startswith("latency_")]
    latency_columns.remove("latency_images_per_s")
    assert latency_columns == [f"latency_{s}_ms" for s in ("mean", "p50", "p90", "p95", "p99")]
    no_reference = row(table, dtype="float32", batch_size=3)
    assert math.isnan(no_reference["reference_images_per_s"])
    assert set(table["device"]) == {"1 GPU"}


def test_points_measured_beside_other_work_are_marked_with_the_reason(tmp_path):
    root = tmp_path / "results"
    inputs = write_results(root, runs={}, scores={}, bench_train={}, bench_infer={})
    inputs["bench_train_files"] = [
        write_bench_train(root, "float32", 0, 16, 20.0, image_size=32),
        write_bench_train(root, "float32", 0, 32, 25.0, image_size=32, load=BUSY_LOAD),
    ]
    inputs["bench_infer_files"] = [
        write_bench_infer(root, "float32", 1, 50.0, gpus=0, load=BUSY_LOAD),
        write_bench_infer(root, "float32", 8, 50.0, gpus=0),
    ]
    outputs = ReportOutputs.in_folder(str(root / "report"))
    build_report(**inputs, **reference_files(REFERENCE_DIR), outputs=outputs)
    reason = "other processes kept 0.99 of 2 cores busy (limit 0.5); load 1.71 before"
    for csv, key in (
        (outputs.training_csv, "batch_per_device"),
        (outputs.inference_csv, "batch_size"),
    ):
        table = pd.read_csv(csv, keep_default_na=False)
        disturbed = dict(zip(table[key], table["disturbed"], strict=True))
        busy_batch = 32 if key == "batch_per_device" else 1
        assert disturbed.pop(busy_batch).startswith(reason)
        assert list(disturbed.values()) == [""]
    text = open(outputs.markdown).read()
    assert text.count("| disturbed while measured |") == 2
    assert text.count("1 of 2 points was measured while other processes kept") == 2


def test_both_engines_per_run_and_onnxruntime_points_beside_mxnets(tmp_path):
    root = tmp_path / "results"
    mxnet_points = {("float32", 8): 800.0}
    inputs = write_results(root, bench_train={}, bench_infer=mxnet_points)
    # MXNet on the CPU at a batch onnxruntime also ran: two points, one per engine.
    inputs["bench_infer_files"].append(write_bench_infer(root, "float32", 1, 40.0, gpus=0))
    parities = [
        write_parity(root, "fp32_1gpu", 0.75, 0.7498, same=0.9996, difference=3.1e-6),
        write_parity(root, "cpu_fp32", 0.9, 0.9, same=1.0, difference=1.2e-6),
    ]
    onnx_points = [
        write_bench_infer(root, "float32", batch, ips, gpus=0, engine="onnxruntime")
        for batch, ips in ((1, 90.0), (8, 300.0))
    ]
    outputs = ReportOutputs.in_folder(str(root / "report"))
    build_report(
        **inputs,
        **reference_files(REFERENCE_DIR),
        outputs=outputs,
        onnx_parity_files=parities,
        bench_infer_onnx_files=onnx_points,
    )
    onnx = pd.read_csv(outputs.onnx_csv)
    assert list(onnx["run"]) == ["cpu_fp32", "fp32_1gpu"]
    fp32 = row(onnx, run="fp32_1gpu")
    # MXNet's top-1 is the run's score (75 %), onnxruntime's the parity pass's.
    assert fp32["mxnet_top1_percent"] == pytest.approx(75.0)
    assert fp32["mxnet_float32_top1_percent"] == pytest.approx(75.0)
    assert fp32["onnxruntime_top1_percent"] == pytest.approx(74.98)
    assert fp32["same_prediction_fraction"] == pytest.approx(0.9996)
    assert fp32["max_abs_logit_difference"] == pytest.approx(3.1e-6)
    assert fp32["dtype"] == "float32"
    # The onnxruntime points sit beside MXNet's, never matched with the (MXNet) reference.
    inference = pd.read_csv(outputs.inference_csv)
    assert len(inference) == 4
    assert set(inference["engine"]) == {"mxnet", "onnxruntime"}
    assert row(inference, engine="mxnet", gpus=0, batch_size=1)["images_per_s"] == 40.0
    assert row(inference, engine="onnxruntime", batch_size=1)["images_per_s"] == 90.0
    onnxruntime_b8 = row(inference, engine="onnxruntime", batch_size=8)
    assert onnxruntime_b8["device"] == "CPU" and onnxruntime_b8["images_per_s"] == 300.0
    assert math.isnan(onnxruntime_b8["reference_images_per_s"])
    mxnet_b8 = row(inference, engine="mxnet", gpus=1, batch_size=8)
    assert mxnet_b8["reference_images_per_s"] == pytest.approx(824)
    text = open(outputs.markdown).read()
    assert "## Deployment: ONNX export in onnxruntime" in text
    assert (
        "| fp32_1gpu | float32 | 500 | 75.00 | 75.00 | 74.98 | 100.00 | 0.9996 | 3.1e-06 |" in text
    )
    assert "Run fp16_8gpu has no ONNX parity result." in text
    # The engine column shows once a point is not MXNet's.
    assert "| float32 | CPU | 224 | 8 | onnxruntime | dali-cpu | NCHW | 300.0 | 270.0 |" in text
    assert "| float32 | 1 GPU | 224 | 8 | mxnet | dali-gpu | NCHW | 800.0 | 720.0 |" in text
    # Every parity result and onnxruntime point is in the Provenance table, named apart.
    labels = set(pd.read_csv(outputs.provenance_csv)["result"])
    assert {"ONNX parity fp32_1gpu", "ONNX parity cpu_fp32"} <= labels
    assert "onnxruntime inference benchmark float32, CPU, batch 1" in labels
    assert "inference benchmark float32, CPU, batch 1" in labels


def test_markdown_has_every_table_reference_label_and_graph(full_report):
    text = open(full_report.markdown).read()
    for heading in (
        "## Accuracy and training time",
        "## Training throughput",
        "## Inference throughput and latency",
        "## Graphs",
    ):
        assert heading in text
    assert REFERENCE_HARDWARE in text
    # The runs differ in their input pipeline backend (and in columns of their own).
    assert (
        "| fp16_8gpu | 8 GPUs | float16 | 224 | 1000 | 90 | dali-gpu | 76.49 | 93.10 | 3.00 "
        "| 78 | 2.60 | 76.49 | 1.000 | 3.30 | 0.909 |" in text
    )
    assert "| CPU | float32 | 32 | 16 | 16 | dali-cpu | NCHW | 20.0 | 18.0 | 60.0 |" in text
    assert "images/s (unwaited batch ends) | images/s (epoch wall time)" in text
    assert "| images/s (unwaited) | images/s (each batch waited) | latency mean (ms, waited) |" in (
        text
    )
    # Every network is ResNet-50 v1.5: no network column.
    assert "| network |" not in text
    assert (
        "1 of 6 measured points of the reference's experiment has no reference point at the "
        "same dtype and batch size." in text
    )
    # Reference points with no measured counterpart are listed apart.
    assert "Reference points not measured here" in text
    assert "| 4 | float16 | 76.33 | 6.20 |" in text
    for name in ("training_loss", "training_top1", "validation_top1", "training_scaling"):
        assert f"]({name}.png)" in text
    # Both precisions were measured everywhere; only float32 at 8 GPUs is absent.
    assert "No float32 point on 8 GPUs: no FP16 speedup there." in text
    assert "No float16 runs" not in text and "No float32 inference" not in text


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 600 <= width <= 2000 and 400 <= height <= 1500, image.size
        colors = image.convert("L").getextrema()
    assert colors[0] < colors[1], f"{path} is one flat color"


def test_every_graph_is_a_sane_png(full_report):
    for field in ReportOutputs.__dataclass_fields__:
        if field.endswith("_png"):
            assert_png(getattr(full_report, field))


def test_reference_points_are_hollow_dotted_and_under_the_measured_ones():
    axes = Figure().add_subplot()
    measured = axes.plot([1, 8], [300.0, 1600.0], color="tab:blue", marker="o")[0]
    plots.plot_reference(axes, [1, 8], [310.0, 1700.0], "float16", "float16, 1 V100")
    reference = axes.lines[-1]
    assert reference.get_linestyle() == ":" and reference.get_marker() == "o"
    assert reference.get_markerfacecolor() == "white"
    assert reference.get_color() == plots.DTYPE_COLORS["float16"]
    assert reference.get_zorder() < measured.get_zorder()
    assert reference.get_label() == f"float16, 1 V100: {REFERENCE_LABEL}"


def test_a_graph_with_nothing_to_draw_says_so_in_the_png_and_in_report_md(tmp_path):
    path = tmp_path / "empty.png"
    assert plots.nothing_to_draw(str(path), "Training loss per epoch", "No runs.") == "No runs."
    assert_png(path)
    outputs = build(tmp_path, runs={}, scores={}, bench_train={}, bench_infer={})
    text = open(outputs.markdown).read()
    graphs = text[text.index("## Graphs") :]
    assert graphs.count("No training runs were given.\n") == 3  # the three per-epoch graphs
    assert graphs.count("No training benchmark results were given.\n") == 1
    assert graphs.count("No inference benchmark results were given.\n") == 2


# Points of one dtype and batch in different experiments: (gpus, image_size, depth).
EXPERIMENTS = {"same": (1, 224, 50), "cpu": (0, 224, 50), "px32": (1, 32, 50), "rn18": (1, 224, 18)}


def test_reference_only_for_the_same_experiment(tmp_path):
    """Only a GPU point of ResNet-50 at 224 px (and for accuracy, 90 epochs on 1000 classes)
    is compared with the V100 reference; the CPU, 32 px and ResNet-18 points get none, and
    report.md says why once per section."""
    train, infer = [], []
    for name, (gpus, size, depth) in EXPERIMENTS.items():
        train.append(write_bench_train(tmp_path / name, "float32", gpus, 96, 300.0, size, depth))
        infer.append(write_bench_infer(tmp_path / name, "float32", 8, 800.0, gpus, size, depth))
    runs = {  # name: (gpus, write_run settings)
        "same": (1, {}),
        "cpu": (0, {}),
        "px32": (1, {"image_size": 32}),
        "digits": (1, {"classes": 10}),
        "short": (1, {"epochs": 30}),
    }
    run_dirs = [
        write_run(tmp_path, r, gpus, "float32", 3600.0, **kw) for r, (gpus, kw) in runs.items()
    ]
    scores = [write_score(tmp_path, run, "float32", 0.75, 0.92) for run in runs]
    outputs = ReportOutputs.in_folder(str(tmp_path / "report"))
    build_report(run_dirs, scores, train, infer, **reference_files(REFERENCE_DIR), outputs=outputs)

    for path, reference, ratio in [
        (outputs.training_csv, 400.2, 300.0 / 400.2),
        (outputs.inference_csv, 824.0, 800.0 / 824.0),
    ]:
        table = pd.read_csv(path)
        same = row(table, gpus=1, image_size=224, network="ResNet-50 v1.5")
        assert same["reference_images_per_s"] == pytest.approx(reference)
        assert same["images_per_s_ratio"] == pytest.approx(ratio)
        others = table[table.index != same.name]
        assert len(others) == 3
        assert others[["reference_images_per_s", "images_per_s_ratio"]].isna().all().all()
        assert others["reference_hardware"].isna().all()
    accuracy = pd.read_csv(outputs.accuracy_csv).set_index("run")
    assert accuracy.loc["same", "top1_ratio"] == pytest.approx(75.0 / 76.462)
    assert accuracy.drop(index="same")["reference_top1_percent"].isna().all()
    assert accuracy.drop(index="same")["top1_ratio"].isna().all()

    text = open(outputs.markdown).read()
    why = "CPU points, ResNet-18 v1.5 points and points at 32 px are not compared with the "
    assert text.count(why) == 2  # training and inference, once each
    assert (
        "CPU runs, runs at 32 px, runs on 10 classes and runs of 30 epochs are not compared "
        "with the reference, which is ResNet-50 v1.5 at 224x224 px on V100 GPUs, 90 epochs on "
        "ImageNet's 1000 classes" in text
    )
    assert "| ResNet-18 v1.5 | 224 | 8 | dali-gpu | NCHW | 800.0 |" in text  # network column shown
    # Matched reference points leave the "not measured here" lists, the others stay.
    assert "| float32 | 8 | 824.0 |" not in text and "| float32 | 1 | 252.0 |" in text
    assert "| 1 | float32 | 96 | 400.2 |" not in text and "| 4 | float32 | 96 | 1558.6 |" in text
    assert "| 1 | float32 | 76.46 | 82.00 |" not in text
    assert "V100 reference not drawn" not in text


def test_demo_results_get_no_reference_and_say_their_size(tmp_path):
    """The demo's results (CPU, 32 px, 10 classes, 30 epochs): no reference value or ratio
    anywhere, the size in the tables, legends and graph notes."""
    root = tmp_path / "results"
    run_dir = write_run(root, "cpu_fp32", 0, "float32", 200.0, **DEMO_SETUP)
    inputs = {
        "run_dirs": [run_dir],
        "score_files": [write_score(root, "cpu_fp32", "float32", 0.97, 1.0, classes=10)],
        "bench_train_files": [write_bench_train(root, "float32", 0, 16, 88.9, image_size=32)],
        "bench_infer_files": [
            write_bench_infer(root, "float32", batch, ips, gpus=0, image_size=32)
            for batch, ips in [(1, 271.2), (8, 873.8), (32, 1384.1)]
        ],
    }
    outputs = ReportOutputs.in_folder(str(root / "report"))
    build_report(**inputs, **reference_files(REFERENCE_DIR), outputs=outputs)
    for path in (outputs.accuracy_csv, outputs.training_csv, outputs.inference_csv):
        table = pd.read_csv(path)
        reference = [name for name in table.columns if "reference" in name or "ratio" in name]
        assert table[reference].isna().all().all(), path
        assert set(table["image_size"]) == {32}
    text = open(outputs.markdown).read()
    assert "| float32 | CPU | 32 | 32 | dali-cpu | NCHW | 1384.1 |" in text
    assert text.count("V100 reference not drawn: no float32 point is ResNet-50 v1.5") == 2
    assert epoch_metrics([read_run(run_dir)])["label"].iloc[0] == "cpu_fp32 (float32, CPU, 32 px)"
    assert setup_suffix("ResNet-18 v1.5", 224) == ", ResNet-18 v1.5"
    assert setup_suffix("ResNet-50 v1.5", 224) == ""


# What each partial subset of results must say is missing in report.md.
PARTIAL = {
    "nothing": (
        {"runs": {}, "scores": {}, "bench_train": {}, "bench_infer": {}},
        [
            "No training runs and no scores were given",
            "No training benchmark results were given",
            "No inference benchmark results were given",
        ],
    ),
    "only-benchmarks": (
        {"runs": {}, "scores": {}},
        ["No training runs and no scores were given"],
    ),
    "one-run-without-score": (
        {"runs": {"cpu_fp32": RUNS["cpu_fp32"]}, "scores": {}, "bench_infer": {}},
        [
            "Run cpu_fp32 has no score file",
            "No float16 runs.",
            "No inference benchmark results were given",
        ],
    ),
    "score-without-run": (
        {"runs": {}, "scores": {"fp32_1gpu": RUNS["fp32_1gpu"]}},
        ["Run fp32_1gpu has a score but no training report"],
    ),
    "no-fp32": (
        {
            "runs": {"fp16_8gpu": RUNS["fp16_8gpu"]},
            "scores": {"fp16_8gpu": RUNS["fp16_8gpu"]},
            "bench_train": {k: v for k, v in BENCH_TRAIN.items() if k[0] == "float16"},
            "bench_infer": {k: v for k, v in BENCH_INFER.items() if k[0] == "float16"},
        },
        [
            "No float32 runs.",
            "No float32 training benchmark points.",
            "FP16 speedup needs float32 points at the same GPU count: none measured.",
            "No float32 inference benchmark points.",
        ],
    ),
    "no-one-gpu-point": (
        {"bench_train": {("float16", 8, 208): 10080.0, ("float32", 0, 16): 20.0}},
        [
            "No 1-GPU point for float16 batch 208: no weak scaling for it.",
            "No float32 point on 8 GPUs: no FP16 speedup there.",
            "CPU points have no weak scaling",
        ],
    ),
}


@pytest.mark.parametrize("subset, missing", PARTIAL.values(), ids=PARTIAL.keys())
def test_partial_results_build_and_say_what_is_missing(tmp_path, subset, missing):
    outputs = build(tmp_path, **subset)
    text = open(outputs.markdown).read()
    for sentence in missing:
        assert sentence in text
    for field in ReportOutputs.__dataclass_fields__:
        path = getattr(outputs, field)
        if field.endswith("_png"):
            assert_png(path)
        elif field.endswith("_csv"):
            pd.read_csv(path)  # headers at least, even when empty


def test_empty_sections_print_no_table(tmp_path):
    outputs = build(tmp_path, runs={}, scores={}, bench_train={}, bench_infer={})
    text = open(outputs.markdown).read()
    assert (
        "| run |" not in text and "| nodes x GPUs | dtype | image (px) | batch per GPU" not in text
    )
    assert pd.read_csv(outputs.accuracy_csv).empty
    # The reference still shows, as reference only.
    assert "| 8 | float16 | 76.49 | 3.30 |" in text


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("top1"), "missing field(s) top1"),
        (lambda r: r.update(top1=76.5), "top1 = 76.5 is not a fraction in [0, 1]"),
        (lambda r: r.update(dtype="float8"), "dtype 'float8'"),
    ],
    ids=["missing-field", "percent-not-fraction", "bad-dtype"],
)
def test_bad_score_file_is_named(tmp_path, edit, message):
    path = tmp_path / "score" / "run.json"
    write_score(tmp_path, "run", "float32", 0.5, 0.8)
    result = json.loads(path.read_text())
    edit(result)
    path.write_text(json.dumps(result))
    outputs = ReportOutputs.in_folder(str(tmp_path / "report"))
    with pytest.raises(ValueError, match="run.json") as error:
        build_report([], [str(path)], [], [], **reference_files(REFERENCE_DIR), outputs=outputs)
    assert message in str(error.value)


def test_inconsistent_inputs_are_named(tmp_path):
    first = write_bench_train(tmp_path / "a", "float32", 1, 96, 400.0)
    second = write_bench_train(tmp_path / "b", "float32", 1, 96, 410.0)
    with pytest.raises(ValueError, match="two files for the same training benchmark point"):
        read_bench([first, second], "train")
    # The same point at another image size is another point.
    other = write_bench_train(tmp_path / "c", "float32", 1, 96, 4000.0, image_size=32)
    assert len(read_bench([first, other], "train")) == 2
    infer = write_bench_infer(tmp_path, "float32", 1, 250.0)
    with pytest.raises(ValueError, match="kind is 'infer', expected 'train'"):
        read_bench([infer], "train")
    point = json.loads(open(infer).read())
    del point["image_size"], point["network"]["depth"]
    write_json(tmp_path / "old.json", point)
    with pytest.raises(ValueError, match=r"old.json: missing field\(s\) network.depth, image_size"):
        read_bench([str(tmp_path / "old.json")], "infer")
    run = write_run(tmp_path, "broken", 0, "float32", 60.0, epochs=3)
    with open(f"{run}/metrics.jsonl", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(ValueError, match=r"broken/metrics.jsonl:4: not valid JSON"):
        read_run(run)
    with pytest.raises(UserError, match="nowhere/report.json"):
        read_run(str(tmp_path / "nowhere"))


def test_two_files_for_one_run_or_one_score_are_named(tmp_path):
    runs = [write_run(tmp_path / d, "same", 0, "float32", 60.0, epochs=2) for d in "ab"]
    with pytest.raises(ValueError, match="two files for the same training run") as error:
        read_runs(runs)
    assert runs[0] in str(error.value) and runs[1] in str(error.value)
    scores = [write_score(tmp_path / d, "same", "float32", 0.5, 0.8) for d in "ab"]
    with pytest.raises(ValueError, match="two files for the same score") as error:
        read_scores(scores)
    assert scores[0] in str(error.value) and scores[1] in str(error.value)
    assert len(read_scores(scores[:1])) == 1


def test_cli_report_writes_the_report(tmp_path):
    from resnet_recipe.cli import main

    inputs = write_results(tmp_path / "results", runs={}, scores={}, bench_train={})
    out = tmp_path / "out"
    code = main(
        ["report", "--bench-infer", *inputs["bench_infer_files"]]
        + ["--reference", str(REFERENCE_DIR), "--out", str(out)]
    )
    assert code == 0
    assert (
        "| float32 | 1 GPU | 224 | 8 | dali-gpu | NCHW | 800.0 |" in (out / "report.md").read_text()
    )


def two_runs(tmp_path, second_batch=32, second_log_interval=50):
    """Two CPU demo runs that differ in their batch per device (unless told otherwise)
    and, with second_log_interval, in a presentation setting; with their scores."""
    root = tmp_path / "results"
    run_dirs = [
        write_run(root, "b32", 0, "float32", 300.0, batch=32, **DEMO_SETUP),
        write_run(root, "b64", 0, "float32", 300.0, batch=second_batch, **DEMO_SETUP),
    ]
    report_path = root / "train" / "b64" / "report.json"
    second = json.loads(report_path.read_text())
    second["settings"]["log_interval"] = second_log_interval
    report_path.write_text(json.dumps(second))
    scores = [write_score(root, run, "float32", 0.9, 1.0, classes=10) for run in ("b32", "b64")]
    return {"run_dirs": run_dirs, "score_files": scores}


def build_two_runs(tmp_path, **kw):
    inputs = two_runs(tmp_path, **kw)
    outputs = ReportOutputs.in_folder(str(tmp_path / "report"))
    build_report(
        **inputs,
        bench_train_files=[],
        bench_infer_files=[],
        **reference_files(REFERENCE_DIR),
        outputs=outputs,
    )
    return outputs


SETTING_NAMES = ("lr_per_256", "log_interval", "pipeline.backend", "network.depth")


def test_accuracy_table_shows_only_the_settings_in_which_runs_differ(tmp_path):
    outputs = build_two_runs(tmp_path, second_batch=64)
    table = pd.read_csv(outputs.accuracy_csv)
    assert list(table.columns[table.columns.get_loc("epochs") + 1 :][:2]) == [
        "batch_per_device",
        "top1_percent",
    ]
    assert dict(zip(table["run"], table["batch_per_device"], strict=True)) == {"b32": 32, "b64": 64}
    assert not set(SETTING_NAMES) & set(table.columns)
    text = open(outputs.markdown).read()
    assert (
        "| run | GPUs | dtype | image (px) | classes | epochs | batch_per_device | top-1 (%) |"
        in text
    )
    assert "| b64 | CPU | float32 | 32 | 10 | 30 | 64 | 90.00 |" in text
    assert not any(f"| {name} |" in text for name in SETTING_NAMES)


def test_runs_that_differ_in_nothing_that_changes_results_get_no_setting_column(tmp_path):
    outputs = build_two_runs(tmp_path, second_log_interval=10)
    table = pd.read_csv(outputs.accuracy_csv)
    assert table.columns[table.columns.get_loc("epochs") + 1] == "top1_percent"
    assert "| b32 | CPU | float32 | 32 | 10 | 30 | 90.00 |" in open(outputs.markdown).read()


def test_provenance_section_lists_each_result_and_marks_other_code(tmp_path):
    inputs = two_runs(tmp_path)
    train = write_bench_train(tmp_path / "results", "float32", 0, 16, 20.0, image_size=32)
    for path, edit in (
        (inputs["score_files"][1], ("code", "git_commit", "0123456789abcdef")),
        (train, ("machine", "hostname", "other-host")),
    ):
        result = json.loads(open(path).read())
        result["provenance"][edit[0]][edit[1]] = edit[2]
        write_json(Path(path), result)
    # A point written before results carried provenance.
    old = write_bench_infer(tmp_path / "results", "float32", 8, 100.0, gpus=0, image_size=32)
    edit = json.loads(open(old).read())
    del edit["provenance"]
    write_json(Path(old), edit)
    outputs = ReportOutputs.in_folder(str(tmp_path / "report"))
    build_report(
        **inputs,
        bench_train_files=[
            train,
            write_bench_train(tmp_path / "results", "float32", 0, 8, 10.0, image_size=32),
        ],
        bench_infer_files=[old],
        **reference_files(REFERENCE_DIR),
        outputs=outputs,
    )
    made = results.read(inputs["run_dirs"][0] + "/report.json", results.RUN_REPORT)["provenance"]
    provenance = pd.read_csv(outputs.provenance_csv, keep_default_na=False)
    assert list(provenance.columns) == [
        "result",
        "git_commit",
        "uncommitted_changes",
        "mxnet",
        "dali",
        "mxnet_features",
        "host",
        "gpu_model",
        "gpu_count",
        "gpu_driver",
        "origin",
    ]
    assert list(provenance["result"]) == [
        "training run b32",
        "training run b64",
        "score b32",
        "score b64",
        "training benchmark float32, CPU, batch 16",
        "training benchmark float32, CPU, batch 8",
        "inference benchmark float32, CPU, batch 8",
    ]
    assert list(provenance["origin"]) == [
        *["", "", "", "other code", "other machine", ""],
        "no provenance",
    ]
    usual = row(provenance, result="score b32")
    assert usual["git_commit"] == made["code"]["git_commit"]
    assert usual["host"] == made["machine"]["hostname"]
    assert usual["mxnet"] == made["versions"]["mxnet"]
    accuracy = pd.read_csv(outputs.accuracy_csv, keep_default_na=False)
    assert dict(zip(accuracy["run"], accuracy["origin"], strict=True)) == {
        "b32": "",
        "b64": "other code",
    }
    training = pd.read_csv(outputs.training_csv, keep_default_na=False)
    assert dict(zip(training["batch_per_device"], training["origin"], strict=True)) == {
        8: "",
        16: "other machine",
    }
    inference = pd.read_csv(outputs.inference_csv, keep_default_na=False)
    assert list(inference["origin"]) == ["no provenance"]
    text = open(outputs.markdown).read()
    assert "## Provenance" in text
    assert (
        "| result | commit | uncommitted changes | MXNet | DALI | MXNet build | host | GPU |"
        in text
    )
    assert "| score b64 | 0123456789 |" in text
    assert (
        "| b64 | CPU | float32 | 32 | 10 | 30 | 90.00 | 100.00 | 0.0833 |  |  |  |  |  |  "
        "| † other code |" in text
    )
    assert "| b32 | CPU | float32 | 32 | 10 | 30 | 90.00 | 100.00 | 0.0833 |  |  |  |  |  |" in text
    assert "† other machine |" in text and "† no provenance |" in text
    assert text.count(ORIGIN_NOTE) == 3  # below each table with a marked row


def test_the_report_lists_what_differs_from_the_reference(tmp_path):
    results = write_results(tmp_path / "results")
    results["bench_infer_files"].append(
        write_bench_infer(tmp_path / "extra", "float16", 16, 900.0, layout="NCHW")
    )
    outputs = ReportOutputs.in_folder(str(tmp_path / "report"))
    build_report(**results, **reference_files(REFERENCE_DIR), outputs=outputs)
    text = open(outputs.markdown).read()
    section = text.split("## What differs from the reference")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()}
    assert "mxnet:18.12-py3" in rows["MXNet build"] and "fused" in rows["MXNet build"]
    assert "MXNet 1.9.1 (upstream)" in rows["MXNet build"]
    assert "DALI 0.5.0" in rows["DALI"] and "1.34.0" in rows["DALI"]
    # float16 inference measured in NCHW (and NHWC): the reference's float16 was NHWC.
    assert rows["float16 layout"].endswith("| NHWC | NCHW, NHWC |")
    assert "float32 layout" not in rows  # float32 NCHW everywhere, as the reference
    # The benchmark points trained with dynamic scaling, the runs' settings name none.
    assert rows["float16 loss scaling"].endswith("| dynamic, none |")
    # Training images/s are measured as the reference's were (unwaited batch ends).
    assert "training throughput" not in rows


def test_differences_read_mxnet_build_features_from_provenance():
    from resnet_recipe.report.differences import differences

    point = {
        "dtype": "float32",
        "layout": "NCHW",
        "versions": VERSIONS,
        "provenance": {"mxnet_features": {"CUDA": True, "CUDNN": True, "MKLDNN": False}},
    }
    rows = dict((aspect, measured) for aspect, _, measured in differences([], [], [point]))
    assert (
        rows["MXNet build"] == "MXNet 1.9.1 (upstream) with CUDA, CUDNN, without the fused kernels"
    )
    assert differences([], [], []) == []
