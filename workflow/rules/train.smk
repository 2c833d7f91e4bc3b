# One training job per run of the training matrix.


rule train:
    input:
        train_rec="results/records/train.rec",
        train_idx="results/records/train.idx",
        val_rec="results/records/val.rec",
        val_idx="results/records/val.idx",
        classes="results/lists/classes.tsv",
    output:
        model=directory("results/train/{run}"),
    log:
        "logs/train/{run}.log",
    benchmark:
        "logs/timing/train/{run}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: lambda wildcards: get_threads(get_run_gpus(wildcards))
    resources:
        # A run over several nodes holds its gpus on each of them.
        gpu=lambda wildcards: get_run_gpus(wildcards) * get_run_nodes(wildcards),
        # SLURM: one node per worker; a CPU run asks one task per worker (the executor
        # plugin gives a GPU run one task per GPU).
        nodes=get_run_nodes,
        tasks=lambda wildcards: (
            1 if get_run_gpus(wildcards) else get_run_nodes(wildcards)
        ),
    params:
        settings=lambda wildcards: get_tracked_run_settings(wildcards.run),
        network=get_tracked("network", Network),
        pipeline=get_tracked_input_settings(),
        lock_dir=config["devices"]["lock_dir"],
        distributed=config["distributed"],
        # Root of the resumable per-epoch state (one folder per settings digest under
        # it); not an output, so a failed job keeps it.
        state_root=lambda wildcards: f"results/checkpoints/{wildcards.run}",
        code=get_code_digest("train.py"),
    script:
        "../scripts/train.py"
