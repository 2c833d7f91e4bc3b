# ONNX export of every trained run, its parity with MXNet in onnxruntime, and onnxruntime's
# CPU inference throughput. The model and its proof of parity live side by side in
# results/onnx/{run}/, the folder to ship.


rule export_onnx:
    input:
        model="results/train/{run}",
        classes="results/lists/classes.tsv",
    output:
        onnx="results/onnx/{run}/model.onnx",
    log:
        "logs/export_onnx/{run}.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        epoch=config["score"]["epoch"],
        code=get_code_digest("export_onnx.py"),
    script:
        "../scripts/export_onnx.py"


rule score_onnx:
    input:
        onnx="results/onnx/{run}/model.onnx",
        model="results/train/{run}",
        val_rec="results/records/val.rec",
        val_idx="results/records/val.idx",
    output:
        parity="results/onnx/{run}/parity.json",
    log:
        "logs/score_onnx/{run}.log",
    benchmark:
        "logs/timing/score_onnx/{run}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    # onnxruntime and the MXNet reference both run on the CPU.
    threads: get_threads(0)
    params:
        score=get_tracked("score", Score),
        pipeline=get_tracked_input_settings(),
        onnx=get_tracked("onnx", Onnx),
        code=get_code_digest("score_onnx.py"),
    script:
        "../scripts/score_onnx.py"


rule bench_infer_onnx:
    input:
        rec="results/records/val.rec",
        idx="results/records/val.idx",
        classes="results/lists/classes.tsv",
    output:
        result="results/bench_infer_onnx/b{batch}.json",
        dllogger="results/bench_infer_onnx/b{batch}.dllogger.json",
    log:
        "logs/bench_infer_onnx/b{batch}.log",
    benchmark:
        "logs/timing/bench_infer_onnx/b{batch}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: get_threads(0)
    params:
        bench=get_tracked("benchmark.infer", BenchInfer, MEASURES_SPEED),
        network=get_tracked("network", Network, MEASURES_SPEED),
        pipeline=get_tracked("input", InputPipeline, MEASURES_SPEED),
        lock_dir=config["devices"]["lock_dir"],
        code=get_code_digest("bench_infer_onnx.py"),
    script:
        "../scripts/bench_infer_onnx.py"
