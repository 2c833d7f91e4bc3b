# One aggregated report: tables (CSV, Markdown) and graphs (PNG) from every result.
# Each output is marked for `snakemake --report`, with its caption in workflow/report/.


report: "../report/workflow.rst"


# The report's files, one row each: output name (a field of
# resnet_recipe.report.ReportOutputs) | file in results/report/ | its caption in
# workflow/report/ | category | subcategory in the HTML report (empty: none).
REPORT_FILES = """
markdown                 | report.md                | summary.rst                    | Summary             |
summary_json             | report.json              | summary_json.rst               | Summary             |
accuracy_csv             | accuracy.csv             | accuracy.rst                   | Accuracy            | Table
families_csv             | families.csv             | families.rst                   | Accuracy            | Replicas
training_csv             | training_throughput.csv  | training_throughput.rst        | Training throughput | Table
inference_csv            | inference_throughput.csv | inference_throughput.rst       | Inference           | Table
onnx_csv                 | onnx_parity.csv          | onnx_parity.rst                | Deployment          | Table
provenance_csv           | provenance.csv           | provenance.rst                 | Provenance          | Table
training_loss_png        | training_loss.png        | training_loss.rst              | Accuracy            | Per-epoch curves
training_top1_png        | training_top1.png        | training_top1.rst              | Accuracy            | Per-epoch curves
validation_top1_png      | validation_top1.png      | validation_top1.rst            | Accuracy            | Per-epoch curves
accuracy_cost_png        | accuracy_cost.png        | accuracy_cost.rst              | Accuracy            | Replicas
training_scaling_png     | training_scaling.png     | training_scaling.rst           | Training throughput | Graph
inference_throughput_png | inference_throughput.png | inference_throughput_graph.rst | Inference           | Graphs
inference_latency_png    | inference_latency.png    | inference_latency.rst          | Inference           | Graphs
"""
REPORT_ROWS = [
    [cell.strip() for cell in row.split("|")]
    for row in REPORT_FILES.strip().splitlines()
]


rule report:
    input:
        runs=expand("results/train/{run}", run=TRAIN_RUNS),
        scores=get_score_results(),
        bench_train=get_bench_train_results(),
        bench_infer=get_bench_infer_results(),
        onnx_parity=get_onnx_parity_results(),
        bench_infer_onnx=get_bench_infer_onnx_results(),
        reference_accuracy="resources/reference/accuracy.csv",
        reference_training="resources/reference/training_throughput.csv",
        reference_inference="resources/reference/inference_throughput.csv",
    output:
        **{
            name: report(
                f"results/report/{file}",
                caption=f"../report/{caption}",
                category=category,
                subcategory=subcategory or None,
            )
            for name, file, caption, category, subcategory in REPORT_ROWS
        },
    log:
        "logs/report.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        report=get_tracked("report", Report),
        code=get_code_digest("report.py"),
    script:
        "../scripts/report.py"
