"""build_report: read every result, write the tables (CSV), the graphs (PNG) and report.md."""

import logging
import os
from dataclasses import dataclass, fields

from resnet_recipe.files.atomic_files import atomic_open
from resnet_recipe.report.differences import differences
from resnet_recipe.report.inputs import (
    MXNET_ENGINE,
    read_bench,
    read_parities,
    read_references,
    read_runs,
    read_scores,
)
from resnet_recipe.report.markdown import report_markdown
from resnet_recipe.report.notes import table_notes
from resnet_recipe.report.origins import mark_origins, provenance_table
from resnet_recipe.report.plots import plot_graphs
from resnet_recipe.report.setting_columns import add_setting_columns
from resnet_recipe.report.tables import (
    accuracy_table,
    epoch_metrics,
    inference_table,
    onnx_table,
    training_throughput_table,
    write_csv,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOutputs:
    """Where the report's files go; field names are the report rule's output names."""

    markdown: str
    accuracy_csv: str
    training_csv: str
    inference_csv: str
    onnx_csv: str
    provenance_csv: str
    training_loss_png: str
    training_top1_png: str
    validation_top1_png: str
    training_scaling_png: str
    inference_throughput_png: str
    inference_latency_png: str

    @classmethod
    def in_folder(cls, folder):
        names = {
            "markdown": "report.md",
            "accuracy_csv": "accuracy.csv",
            "training_csv": "training_throughput.csv",
            "inference_csv": "inference_throughput.csv",
            "onnx_csv": "onnx_parity.csv",
            "provenance_csv": "provenance.csv",
        }
        return cls(
            **{
                field.name: os.path.join(folder, names.get(field.name, field.name[:-4] + ".png"))
                for field in fields(cls)
            }
        )


def build_report(
    run_dirs,
    score_files,
    bench_train_files,
    bench_infer_files,
    reference_accuracy,
    reference_training,
    reference_inference,
    outputs,
    onnx_parity_files=(),
    bench_infer_onnx_files=(),
):
    """Read every given result file and the reference CSVs, write the tables, graphs and
    report.md to `outputs` (a ReportOutputs). Any of the result lists may be empty;
    onnxruntime's inference points join MXNet's in the inference table and graphs."""
    runs = read_runs(run_dirs)
    scores = read_scores(score_files)
    parities = read_parities(onnx_parity_files)
    bench_train = read_bench(bench_train_files, "train")
    bench_infer = read_bench(bench_infer_files, "infer", bench_infer_onnx_files)
    reference = read_references(reference_accuracy, reference_training, reference_inference)
    log.info(
        "report from %d runs, %d scores, %d training and %d inference benchmark points",
        *(len(runs), len(scores), len(bench_train), len(bench_infer)),
    )
    accuracy, setting_names = add_setting_columns(
        accuracy_table(runs, scores, reference["accuracy"]), runs
    )
    tables = {
        "accuracy": accuracy,
        "training": training_throughput_table(bench_train, reference["training"]),
        "inference": inference_table(bench_infer, reference["inference"]),
        "onnx": onnx_table(scores, parities),
    }
    provenance = provenance_table(runs, scores, bench_train, bench_infer, parities)
    tables = mark_origins(tables, runs, scores, bench_train, bench_infer, parities)
    write_tables(outputs, tables, provenance)
    graph_notes = plot_graphs(epoch_metrics(runs), tables, reference, outputs)
    machines = [result["machine"] for result in bench_train["result"]]
    machines += [result["machine"] for result in bench_infer["result"]]
    notes = table_notes(runs, scores, tables)
    # Other engines' points are never compared with the (MXNet) reference.
    mxnet_infer = bench_infer.loc[bench_infer["engine"] == MXNET_ENGINE, "result"]
    differing = differences(
        [run["report"] for run in runs], list(bench_train["result"]), list(mxnet_infer)
    )
    markdown = report_markdown(
        tables,
        notes,
        reference,
        machines,
        graph_notes,
        outputs,
        provenance,
        setting_names,
        differing,
    )
    with atomic_open(outputs.markdown) as handle:
        handle.write(markdown)
    log.info("wrote %s and the tables and graphs beside it", outputs.markdown)


def write_tables(outputs, tables, provenance):
    """The CSV of every table (tables by section name) and of the provenance table."""
    write_csv(outputs.accuracy_csv, tables["accuracy"])
    write_csv(outputs.training_csv, tables["training"])
    write_csv(outputs.inference_csv, tables["inference"])
    write_csv(outputs.onnx_csv, tables["onnx"])
    write_csv(outputs.provenance_csv, provenance)
