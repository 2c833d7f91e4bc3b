"""Snakemake's HTML report of the report rule, run on fixture results in a copy of the
workflow: its outputs, categories and captions."""

import json
import os

from helpers import REPO
from helpers.result_files import (
    BENCH_INFER,
    BENCH_TRAIN,
    RUNS,
    write_bench_infer,
    write_parity,
    write_results,
)
from helpers.workflow_runs import copy_workflow, demo_config, run_snakemake, write_config

from resnet_recipe.report.build import ReportOutputs


def test_snakemake_html_report_of_the_report_rule(tmp_path):
    """Run only the report rule on fixture results in a copy of the workflow, then make
    Snakemake's HTML report from it."""
    workdir = copy_workflow(tmp_path / "workflow-copy")
    config = demo_config()
    config["training"]["runs"] = {"cpu_fp32": {}, "fp16_8gpu": {"gpus": 8, "dtype": "float16"}}
    config["benchmark"]["train"]["points"] = {
        "float32": {"gpus": [0], "batch_sizes": [16]},
        "float16": {"gpus": [1, 4, 8], "batch_sizes": [208]},
    }
    config["benchmark"]["infer"]["batch_sizes"] = {"float32": [1, 8]}
    write_config(workdir / "report-test.yaml", config)
    write_results(
        workdir / "results",
        runs={run: RUNS[run] for run in config["training"]["runs"]},
        scores={run: RUNS[run] for run in config["training"]["runs"]},
        bench_train={p: ips for p, ips in BENCH_TRAIN.items() if p[0] == "float16" and p[2] == 208}
        | {("float32", 0, 16): 20.0},
        bench_infer={p: ips for p, ips in BENCH_INFER.items() if p[0] == "float32" and p[1] != 3},
    )
    for run in config["training"]["runs"]:
        write_parity(workdir / "results", run, 0.9, 0.9, same=1.0, difference=1e-6)
    for batch in config["benchmark"]["infer"]["batch_sizes"]["float32"]:
        write_bench_infer(workdir / "results", "float32", batch, 50.0, gpus=0, engine="onnxruntime")
    # Only the report rule may run: the fixture results stand in for everything upstream.
    args = ["results/report/report.md", "--configfile", "report-test.yaml"]
    args += ["--allowed-rules", "report"]
    run_snakemake(workdir, *args, "--cores", "1")
    run_snakemake(workdir, *args, "--report", "report.html")
    # The rule's outputs (from its table) are the files the package names.
    expected = ReportOutputs.in_folder("results/report")
    written = {path.name for path in (workdir / "results" / "report").iterdir()}
    assert written == {
        os.path.basename(getattr(expected, f)) for f in expected.__dataclass_fields__
    }
    html = (workdir / "report.html").read_text()
    assert "training_scaling.png" in html and "accuracy.csv" in html
    assert "ideal linear scaling" in html  # a caption from workflow/report/
    categories = {
        category: {sub: {os.path.basename(path) for path in paths} for sub, paths in subs.items()}
        for category, subs in html_report_data(html, "categories").items()
    }
    assert categories == HTML_CATEGORIES
    outputs = html_report_data(html, "results")
    assert len(outputs) == len(HTML_CAPTIONS)
    for path, output in outputs.items():
        caption = REPO / "workflow" / "report" / HTML_CAPTIONS[os.path.basename(path)]
        assert output["caption"] == f"<p>{caption.read_text().strip()}</p>\n", path


# The report rule's outputs in Snakemake's HTML report: category: {subcategory: files}
# ("Other" where there is no subcategory), and each file's caption in workflow/report/.
HTML_CATEGORIES = {
    "Summary": {"Other": {"report.md", "report.json"}},
    "Accuracy": {
        "Table": {"accuracy.csv"},
        "Replicas": {"families.csv", "accuracy_cost.png"},
        "Per-epoch curves": {"training_loss.png", "training_top1.png", "validation_top1.png"},
    },
    "Training throughput": {
        "Table": {"training_throughput.csv"},
        "Graph": {"training_scaling.png"},
    },
    "Inference": {
        "Table": {"inference_throughput.csv"},
        "Graphs": {"inference_throughput.png", "inference_latency.png"},
    },
    "Deployment": {"Table": {"onnx_parity.csv"}},
    "Provenance": {"Table": {"provenance.csv"}},
}
HTML_CAPTIONS = {
    "report.md": "summary.rst",
    "report.json": "summary_json.rst",
    "accuracy.csv": "accuracy.rst",
    "families.csv": "families.rst",
    "accuracy_cost.png": "accuracy_cost.rst",
    "training_throughput.csv": "training_throughput.rst",
    "inference_throughput.csv": "inference_throughput.rst",
    "onnx_parity.csv": "onnx_parity.rst",
    "provenance.csv": "provenance.rst",
    "training_loss.png": "training_loss.rst",
    "training_top1.png": "training_top1.rst",
    "validation_top1.png": "validation_top1.rst",
    "training_scaling.png": "training_scaling.rst",
    "inference_throughput.png": "inference_throughput_graph.rst",
    "inference_latency.png": "inference_latency.rst",
}


def html_report_data(html, name):
    """The JSON object that Snakemake's HTML report assigns to the JavaScript variable
    `name` (categories, results)."""
    start = html.index(f"{name} = {{") + len(f"{name} = ")
    return json.JSONDecoder().raw_decode(html, start)[0]
