# One aggregated report: tables (CSV, Markdown) and graphs (PNG) from every result.
# Each output is marked for `snakemake --report`, with its caption in workflow/report/.


report: "../report/workflow.rst"


rule report:
    input:
        runs=expand("results/train/{run}", run=TRAIN_RUNS),
        scores=get_score_results(),
        bench_train=get_bench_train_results(),
        bench_infer=get_bench_infer_results(),
        reference_accuracy="resources/reference/accuracy.csv",
        reference_training="resources/reference/training_throughput.csv",
        reference_inference="resources/reference/inference_throughput.csv",
    output:
        markdown=report(
            "results/report/report.md",
            caption="../report/summary.rst",
            category="Summary",
        ),
        accuracy_csv=report(
            "results/report/accuracy.csv",
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="Table",
        ),
        training_csv=report(
            "results/report/training_throughput.csv",
            caption="../report/training_throughput.rst",
            category="Training throughput",
            subcategory="Table",
        ),
        inference_csv=report(
            "results/report/inference_throughput.csv",
            caption="../report/inference_throughput.rst",
            category="Inference",
            subcategory="Table",
        ),
        training_loss_png=report(
            "results/report/training_loss.png",
            caption="../report/training_loss.rst",
            category="Accuracy",
            subcategory="Per-epoch curves",
        ),
        training_top1_png=report(
            "results/report/training_top1.png",
            caption="../report/training_top1.rst",
            category="Accuracy",
            subcategory="Per-epoch curves",
        ),
        validation_top1_png=report(
            "results/report/validation_top1.png",
            caption="../report/validation_top1.rst",
            category="Accuracy",
            subcategory="Per-epoch curves",
        ),
        training_scaling_png=report(
            "results/report/training_scaling.png",
            caption="../report/training_scaling.rst",
            category="Training throughput",
            subcategory="Graph",
        ),
        inference_throughput_png=report(
            "results/report/inference_throughput.png",
            caption="../report/inference_throughput_graph.rst",
            category="Inference",
            subcategory="Graphs",
        ),
        inference_latency_png=report(
            "results/report/inference_latency.png",
            caption="../report/inference_latency.rst",
            category="Inference",
            subcategory="Graphs",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        code=get_code_digest("report.py"),
    script:
        "../scripts/report.py"
