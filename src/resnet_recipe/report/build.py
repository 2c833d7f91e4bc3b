"""build_report: read every result, write the tables (CSV), the graphs (PNG) and report.md."""

import logging
import os
from dataclasses import dataclass, fields

from resnet_recipe.files.atomic_files import atomic_open
from resnet_recipe.report.cost_plot import plot_accuracy_cost
from resnet_recipe.report.differences import differences
from resnet_recipe.report.families import (
    CSV_COLUMNS,
    family_comparisons,
    family_table,
    write_summary,
)
from resnet_recipe.report.inputs import (
    MXNET_ENGINE,
    read_bench,
    read_parities,
    read_references,
    read_runs,
    read_scores,
)
from resnet_recipe.report.markdown import experiments_markdown, report_markdown
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
from resnet_recipe.workflow_support.settings import Report

log = logging.getLogger(__name__)
# report.target_top1 as declared: MLPerf's ResNet-50 target.
DEFAULT_TARGET_TOP1 = Report().target_top1


@dataclass(frozen=True)
class ReportOutputs:
    """Where the report's files go; field names are the report rule's output names."""

    markdown: str
    summary_json: str
    accuracy_csv: str
    families_csv: str
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
    accuracy_cost_png: str

    @classmethod
    def in_folder(cls, folder):
        names = {
            "markdown": "report.md",
            "summary_json": "report.json",
            "accuracy_csv": "accuracy.csv",
            "families_csv": "families.csv",
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
    target_top1=DEFAULT_TARGET_TOP1,
):
    """Read every given result file and the reference CSVs, write the tables, graphs,
    report.md and report.json to `outputs` (a ReportOutputs). Any of the result lists may
    be empty; onnxruntime's inference points join MXNet's in the inference table and
    graphs. target_top1: the validation top-1 (percent) each run is timed to."""
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
        accuracy_table(runs, scores, reference["accuracy"], target_top1), runs
    )
    family_rows = family_table(runs, accuracy, target_top1)
    comparisons, single_seed = family_comparisons(family_rows, accuracy)
    tables = {
        "accuracy": accuracy,
        "training": training_throughput_table(bench_train, reference["training"]),
        "inference": inference_table(bench_infer, reference["inference"]),
        "onnx": onnx_table(scores, parities),
    }
    provenance = provenance_table(runs, scores, bench_train, bench_infer, parities)
    tables = mark_origins(tables, runs, scores, bench_train, bench_infer, parities)
    write_tables(outputs, tables, provenance)
    write_csv(outputs.families_csv, family_rows[CSV_COLUMNS])
    write_summary(outputs.summary_json, accuracy, family_rows, comparisons, target_top1)
    graph_notes = plot_graphs(epoch_metrics(runs), tables, reference, outputs)
    graph_notes["accuracy_cost_png"] = plot_accuracy_cost(
        family_rows, reference["accuracy"], outputs.accuracy_cost_png
    )
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
        experiments_markdown(family_rows, comparisons, single_seed, target_top1),
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
