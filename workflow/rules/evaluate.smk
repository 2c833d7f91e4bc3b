# Scoring of trained runs and throughput benchmarks, one cached job per point.
rule score:
    input:
        model="results/train/{run}",
        val_rec="results/records/val.rec",
        val_idx="results/records/val.idx",
    output:
        score="results/score/{run}.json",
        # Its DLLogger log, written by the script beside the result (dllogger_log.py).
        dllogger="results/score/{run}.dllogger.json",
    log:
        "logs/score/{run}.log",
    benchmark:
        "logs/timing/score/{run}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: lambda wildcards: get_threads(get_score_gpus(wildcards))
    resources:
        gpu=get_score_gpus,
    params:
        score=get_tracked("score", Score),
        pipeline=get_tracked_input_settings(),
        lock_dir=config["devices"]["lock_dir"],
        code=get_code_digest("score.py"),
    script:
        "../scripts/score.py"


rule bench_train:
    input:
        rec="results/records/train.rec",
        idx="results/records/train.idx",
        val_rec="results/records/val.rec",
        val_idx="results/records/val.idx",
        classes="results/lists/classes.tsv",
    output:
        result="results/bench_train/{dtype}/n{gpus}_b{batch_per_device}.json",
        dllogger="results/bench_train/{dtype}/n{gpus}_b{batch_per_device}.dllogger.json",
    log:
        "logs/bench_train/{dtype}/n{gpus}_b{batch_per_device}.log",
    benchmark:
        "logs/timing/bench_train/{dtype}/n{gpus}_b{batch_per_device}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: lambda wildcards: get_threads(int(wildcards.gpus))
    resources:
        gpu=lambda wildcards: int(wildcards.gpus),
    params:
        bench=get_tracked("benchmark.train", BenchTrain, MEASURES_SPEED),
        # The loop runs training.defaults but what the point sets and what only logs.
        training=get_bench_training_settings(),
        network=get_tracked("network", Network, MEASURES_SPEED),
        pipeline=get_tracked("input", InputPipeline, MEASURES_SPEED),
        lock_dir=config["devices"]["lock_dir"],
        code=get_code_digest("bench_train.py"),
    script:
        "../scripts/bench_train.py"


rule bench_infer:
    input:
        rec="results/records/val.rec",
        idx="results/records/val.idx",
        classes="results/lists/classes.tsv",
    output:
        result="results/bench_infer/{dtype}/b{batch}.json",
        dllogger="results/bench_infer/{dtype}/b{batch}.dllogger.json",
    log:
        "logs/bench_infer/{dtype}/b{batch}.log",
    benchmark:
        "logs/timing/bench_infer/{dtype}/b{batch}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: get_threads(config["benchmark"]["infer"]["gpus"])
    resources:
        gpu=config["benchmark"]["infer"]["gpus"],
    params:
        bench=get_tracked("benchmark.infer", BenchInfer, MEASURES_SPEED),
        network=get_tracked("network", Network, MEASURES_SPEED),
        pipeline=get_tracked("input", InputPipeline, MEASURES_SPEED),
        lock_dir=config["devices"]["lock_dir"],
        code=get_code_digest("bench_infer.py"),
    script:
        "../scripts/bench_infer.py"


rule bench_summary:
    input:
        train=get_bench_train_results(),
        infer=get_bench_infer_results(),
    output:
        train="results/bench_summary/train.json",
        infer="results/bench_summary/infer.json",
    log:
        "logs/bench_summary.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        code=get_code_digest("bench_summary.py"),
    script:
        "../scripts/bench_summary.py"
