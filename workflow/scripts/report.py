"""Stage entry point of the report rule: tables, graphs and report.md from all results."""

from resnet_recipe.report.build import ReportOutputs, build_report
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import Report

run_logged(
    snakemake.log[0],
    build_report,
    run_dirs=snakemake.input.runs,
    score_files=snakemake.input.scores,
    bench_train_files=snakemake.input.bench_train,
    bench_infer_files=snakemake.input.bench_infer,
    reference_accuracy=snakemake.input.reference_accuracy,
    reference_training=snakemake.input.reference_training,
    reference_inference=snakemake.input.reference_inference,
    outputs=ReportOutputs(**dict(snakemake.output.items())),
    onnx_parity_files=snakemake.input.onnx_parity,
    bench_infer_onnx_files=snakemake.input.bench_infer_onnx,
    target_top1=Report.from_config(snakemake.config["report"], "report").target_top1,
)
