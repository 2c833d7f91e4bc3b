"""Result files as the workflow writes them (through results.write, to the file
contracts): training runs, scores, benchmark points and parity checks, and a report built
from a chosen subset of them."""

import json
from pathlib import Path

from helpers import REPO
from resnet_recipe.report.build import ReportOutputs, build_report
from resnet_recipe.report.inputs import reference_files
from resnet_recipe.workflow_support import results

REFERENCE_DIR = REPO / "resources" / "reference"
VERSIONS = {"mxnet": "1.9.1", "numpy": "1.23.5", "nvidia-dali": "1.34.0", "python": "3.11.7"}


# machine_load of tiny CPU training points measured on the project's 2-core machine (see
# workflow_support/machine_load.py): alone, and beside one `python -c 'while 1: pass'`.
QUIET_LOAD = {
    "cores": 2,
    "wall_s": 2.55,
    "process_cpu_s": 2.62,
    "machine_cpu_s": 2.85,
    "load_before": 1.75,
    "load_after": 1.69,
}
BUSY_LOAD = {
    "cores": 2,
    "wall_s": 2.41,
    "process_cpu_s": 2.42,
    "machine_cpu_s": 4.80,
    "load_before": 1.71,
    "load_after": 1.71,
}


def machine(gpus):
    """devices.describe_machine() without versions, as the benchmarks write it."""
    names = ["Tesla V100-SXM2-16GB"] * gpus
    return {"hostname": "test-host", "cpu_model": "Test CPU", "logical_cores": 2, "gpus": names}


def network(depth=50):
    return {"depth": depth, "version": "1.5", "zero_init_last_gamma": True}


def backend(gpus):
    return "dali-gpu" if gpus else "dali-cpu"


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def write_result(path, contract, data, settings_keys):
    """A result file as the workflow writes it: through results.write, which adds the
    provenance section (this checkout, this machine) and the digest of the settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results.write(str(path), contract, data, {key: data[key] for key in settings_keys})
    return str(path)


def write_run(
    root,
    run,
    gpus,
    dtype,
    train_seconds,
    epochs=90,
    classes=1000,
    image_size=224,
    batch=32,
    settings=None,
    shift=None,
):
    """results/train/{run}/ with report.json and metrics.jsonl as training.write_outputs
    writes them; `settings` are added to the report's training settings, `shift` to every
    accuracy of its curves (by default 0.03 per GPU, so that runs stand apart)."""
    folder = root / "train" / run
    shift = 0.03 * gpus if shift is None else shift
    lines = [
        {
            "epoch": epoch,
            "epoch_seconds": train_seconds / epochs,
            "images_per_s": 100.0,
            "loss_scale": 1.0,
            "lr": 0.1,
            "train_loss": 2.3 / epoch + shift,
            "train_top1": 0.7 * epoch / epochs + shift,
            "val_loss": 2.4 / epoch + shift,
            "val_top1": 0.6 * epoch / epochs + shift,
            "val_top5": 0.7 * epoch / epochs + shift,
        }
        for epoch in range(1, epochs + 1)
    ]
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_result(
        folder / "report.json",
        results.RUN_REPORT,
        {
            "run": run,
            "gpus": gpus,
            "devices": [f"gpu({i})" for i in range(gpus)] or ["cpu(0)"],
            "dtype": dtype,
            "batch_per_device": batch,
            "global_batch": batch * max(gpus, 1),
            "epochs": epochs,
            "classes": classes,
            "val_top1": lines[-1]["val_top1"],
            "val_top5": lines[-1]["val_top5"],
            "train_seconds": train_seconds,
            "images_per_s": 100.0,
            "settings": {
                "gpus": gpus,
                "dtype": dtype,
                "epochs": epochs,
                "batch_per_device": batch,
                "lr_per_256": 0.1,
                "log_interval": 50,
                **(settings or {}),
            },
            "network": network(),
            "pipeline": {"backend": backend(gpus), "image_size": image_size, "val_resize": 256},
            "machine": {**machine(gpus), "versions": VERSIONS},
        },
        ("settings", "network", "pipeline"),
    )
    return str(folder)


def write_replicas(root, family, top1s, lr_per_256=0.1, epochs=30, first_seed=1):
    """A family of CPU runs that differ only in their seed (first_seed, first_seed + 1,
    ...): train/FAMILY.seedN and its score, of top-1 top1s in turn (at most 0.85: the
    curves end at it, top-5 0.1 above), the curves of each seed shifted by its top-1."""
    seeds = range(first_seed, first_seed + len(top1s))
    for seed, top1 in zip(seeds, top1s, strict=True):
        run = f"{family}.seed{seed}"
        settings = {"seed": seed, "lr_per_256": lr_per_256}
        shift = top1 - 0.6  # the curves end at the run's top-1
        write_run(root, run, 0, "float32", 300.0 + 10 * seed, epochs, 10, 32, 32, settings, shift)
        write_score(root, run, "float32", top1, min(top1 + 0.05, 1.0), classes=10)
    return [str(root / "train" / f"{family}.seed{seed}") for seed in seeds]


def latency(batch, images_per_s):
    mean = 1000.0 * batch / images_per_s
    return {
        "max": mean * 1.6,
        "mean": mean,
        "p50": mean * 0.98,
        "p90": mean * 1.1,
        "p95": mean * 1.2,
        "p99": mean * 1.5,
    }


def write_score(root, run, dtype, top1, top5, classes=1000):
    return write_result(
        root / "score" / f"{run}.json",
        results.SCORE,
        {
            "run": run,
            "checkpoint": {"prefix": f"results/train/{run}/model", "epoch": 90},
            "dtype": dtype,
            "device": "cpu(0)",
            "images": 500,
            "batch_size": 64,
            "classes": classes,
            "top1": top1,
            "top5": top5,
            "loss": 1.0,
            "images_per_s": 900.0,
            "latency_ms": latency(64, 900.0),
        },
        ("checkpoint", "dtype", "batch_size"),
    )


def write_bench_train(
    root, dtype, gpus, batch, images_per_s, image_size=224, depth=50, nodes=None, load=QUIET_LOAD
):
    """A training point as throughput.bench_train writes it (latency: the mean only), its
    epoch wall-time images/s 0.9 of its unwaited images/s, measured under `load`; nodes
    None: a point written before points had a node count."""
    wall_images_per_s = 0.9 * images_per_s
    global_batch = batch * max(gpus, 1) * (nodes or 1)
    name = f"n{gpus}_b{batch}" + (f"_x{nodes}" if nodes else "")
    return write_result(
        root / "bench_train" / dtype / f"{name}.json",
        results.BENCH_TRAIN,
        {
            "kind": "train",
            "dtype": dtype,
            "gpus": gpus,
            **({"nodes": nodes} if nodes else {}),
            "devices": [f"gpu({i})" for i in range(gpus)] or ["cpu(0)"],
            "batch_per_device": batch,
            "global_batch": global_batch,
            "data": "dali",
            "input_backend": backend(gpus),
            "image_size": image_size,
            "layout": "NHWC" if dtype == "float16" else "NCHW",
            "iterations": 5,
            "epochs": 3,
            "warmup_epochs": 1,
            "num_examples": 12800,
            "settings": {"dtype": dtype, "loss_scale": "dynamic"},
            "throughput_method": "unwaited batch ends",
            "epoch_batch_seconds": [2 * global_batch / images_per_s]
            + [global_batch / images_per_s] * 2,
            "epoch_images_per_s": [images_per_s * 0.5, images_per_s, images_per_s],
            "images_per_s": images_per_s,
            "wall_method": "epoch wall time",
            "epoch_seconds": [2 * 5 * global_batch / wall_images_per_s]
            + [5 * global_batch / wall_images_per_s] * 2,
            "wall_epoch_images_per_s": [wall_images_per_s * 0.5, *[wall_images_per_s] * 2],
            "wall_images_per_s": wall_images_per_s,
            "val_images_per_s": 3 * images_per_s,
            "latency_ms": {"mean": 1000.0 * global_batch / wall_images_per_s},
            "machine_load": load,
            "network": network(depth),
            "machine": machine(gpus),
            "versions": VERSIONS,
        },
        ("dtype", "gpus", "network", "image_size"),
    )


# What an onnxruntime inference point carries beside an MXNet point's fields and engine.
ONNXRUNTIME_POINT = {"provider": "CPUExecutionProvider", "threads": 2}


def write_bench_infer(
    root,
    dtype,
    batch,
    images_per_s,
    gpus=1,
    image_size=224,
    depth=50,
    layout="NCHW",
    engine=None,
    load=QUIET_LOAD,
):
    """An inference point as throughput.bench_infer writes it, measured under `load`; with
    an engine (onnxruntime), as onnx_inference.bench_infer_onnxruntime writes it."""
    folder = root / "bench_infer" / dtype if engine is None else root / "bench_infer_onnx"
    return write_result(
        folder / f"b{batch}.json",
        results.BENCH_INFER if engine is None else results.BENCH_INFER_ENGINE,
        {
            **({} if engine is None else {"engine": engine, **ONNXRUNTIME_POINT}),
            "kind": "infer",
            "dtype": dtype,
            "gpus": gpus,
            "device": "gpu(0)" if gpus else "cpu(0)",
            "batch_size": batch,
            "data": "dali",
            "input_backend": backend(gpus),
            "image_size": image_size,
            "layout": layout,
            "weights": "random initialisation: throughput does not depend on trained weights",
            "iterations": 20,
            "epochs": 3,
            "warmup_epochs": 1,
            "epoch_images_per_s": [images_per_s / 2, images_per_s, images_per_s],
            "images_per_s": images_per_s,
            "latency_images_per_s": 0.9 * images_per_s,
            "latency_ms": latency(batch, 0.9 * images_per_s),
            "machine_load": load,
            "network": network(depth),
            "machine": machine(gpus),
            "versions": VERSIONS,
        },
        ("dtype", "gpus", "network", "image_size", *(() if engine is None else ("engine",))),
    )


def write_parity(root, run, mxnet_top1, onnxruntime_top1, same, difference, images=500):
    """results/onnx/{run}/parity.json as onnx_inference.score_onnx writes it."""
    engines = {
        "onnxruntime": {"top1": onnxruntime_top1, "top5": 1.0, "loss": 1.0, "version": "1.19.2"},
        "mxnet": {"top1": mxnet_top1, "top5": 1.0, "dtype": "float32", "device": "cpu(0)"},
    }
    return write_result(
        root / "onnx" / run / "parity.json",
        results.ONNX_PARITY,
        {
            "run": run,
            "model": f"results/onnx/{run}/model.onnx",
            "checkpoint": {"prefix": f"results/train/{run}/model", "epoch": 90},
            "batch_size": 64,
            "classes": 10,
            "images": images,
            **engines,
            "same_prediction_fraction": same,
            "max_abs_logit_difference": difference,
            "max_abs_logit": 12.0,
            "logit_tolerance": 0.001,
        },
        ("run", "batch_size"),
    )


# Training benchmark points (dtype, gpus, batch per GPU): images/s. float16 batch 208 has
# no float32 partner at that batch (speedup falls back to float32's largest batch, 96);
# float16 batch 96 has one; 8 GPUs have no float32 point; gpus 0 is the CPU, whose points
# are written at 32 px as the demo's.
BENCH_TRAIN = {
    ("float16", 1, 208): 1400.0,
    ("float16", 4, 208): 5250.0,
    ("float16", 8, 208): 10080.0,
    ("float16", 1, 96): 1300.0,
    ("float32", 1, 96): 400.0,
    ("float32", 4, 96): 1500.0,
    ("float32", 0, 16): 20.0,
}
BENCH_INFER = {
    ("float16", 1): 300.0,
    ("float16", 8): 1600.0,
    ("float16", 208): 3800.0,
    ("float32", 1): 250.0,
    ("float32", 3): 500.0,
    ("float32", 8): 800.0,
}
# run: (gpus, dtype, train_seconds, top1, top5); the GPU runs are ImageNet's 90 epochs at
# 224 px, the CPU run is the demo's (30 epochs of 10 classes at 32 px).
RUNS = {
    "fp16_8gpu": (8, "float16", 3 * 3600.0, 0.7649, 0.931),
    "fp32_1gpu": (1, "float32", 10 * 3600.0, 0.75, 0.92),
    "cpu_fp32": (0, "float32", 300.0, 0.9, 1.0),
}
DEMO_SETUP = {"epochs": 30, "classes": 10, "image_size": 32}


def write_results(root, runs=RUNS, scores=RUNS, bench_train=BENCH_TRAIN, bench_infer=BENCH_INFER):
    """Result files for the chosen subset; returns build_report's result arguments."""
    return {
        "run_dirs": [
            write_run(root, run, *runs[run][:3], **(DEMO_SETUP if runs[run][0] == 0 else {}))
            for run in runs
        ],
        "score_files": [
            write_score(root, run, scores[run][1], *scores[run][3:], 1000 if scores[run][0] else 10)
            for run in scores
        ],
        "bench_train_files": [
            write_bench_train(root, *point, ips, image_size=224 if point[1] else 32)
            for point, ips in bench_train.items()
        ],
        "bench_infer_files": [
            write_bench_infer(root, *point, ips) for point, ips in bench_infer.items()
        ],
    }


def build(tmp_path, **subset):
    inputs = write_results(tmp_path / "results", **subset)
    outputs = ReportOutputs.in_folder(str(tmp_path / "results" / "report"))
    build_report(**inputs, **reference_files(REFERENCE_DIR), outputs=outputs)
    return outputs


def edit_json(path, edit):
    path = Path(path)
    result = json.loads(path.read_text())
    edit(result)
    path.write_text(json.dumps(result))


def results_folder(root, batch, commit=None, extra_run=False):
    """A results folder with run r (batch per device `batch`), its score and one inference
    point; the run's files carry git commit `commit` when given."""
    run = write_run(root, "r", 0, "float32", 300.0 * batch / 32, batch=batch, **DEMO_SETUP)
    score = write_score(root, "r", "float32", 0.5 + batch / 1000, 0.9, classes=10)
    write_bench_infer(root, "float32", 8, 100.0 * batch, gpus=0, image_size=32)
    if extra_run:
        write_run(root, "only_here", 0, "float32", 60.0, epochs=2)
    if commit:
        for path in (f"{run}/report.json", score):
            edit_json(path, lambda r: r["provenance"]["code"].update(git_commit=commit))
    return root
