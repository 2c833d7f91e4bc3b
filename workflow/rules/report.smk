# One aggregated report: tables (CSV, Markdown) and graphs (PNG) from every result.


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
        markdown="results/report/report.md",
        accuracy="results/report/accuracy.csv",
        training_throughput="results/report/training_throughput.csv",
        inference_throughput="results/report/inference_throughput.csv",
        training_loss="results/report/training_loss.png",
        training_top1="results/report/training_top1.png",
        validation_top1="results/report/validation_top1.png",
        training_scaling="results/report/training_scaling.png",
        inference_throughput_png="results/report/inference_throughput.png",
        inference_latency="results/report/inference_latency.png",
    log:
        "logs/report.log",
    script:
        "../scripts/report.py"
