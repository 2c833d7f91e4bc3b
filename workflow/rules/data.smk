# Raw JPEG tree -> im2rec lists -> pass-through RecordIO.


if config["data"]["demo"]:

    rule demo_dataset:
        output:
            train=directory(f"{RAW_DIR}/train"),
            val=directory(f"{RAW_DIR}/val"),
        log:
            "logs/demo_dataset.log",
        conda:
            "../envs/resnet-recipe.yaml"
        params:
            code=get_code_digest("demo_dataset.py"),
        script:
            "../scripts/demo_dataset.py"


rule make_classes:
    input:
        train=f"{RAW_DIR}/train",
        names=lambda wildcards: config["data"]["class_names"] or [],
    output:
        classes="results/lists/classes.tsv",
    log:
        "logs/lists/classes.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        class_folders=lambda wildcards: get_class_folders(),
        code=get_code_digest("make_classes.py"),
    script:
        "../scripts/make_classes.py"


rule make_list:
    input:
        raw=f"{RAW_DIR}/{{split}}",
        classes="results/lists/classes.tsv",
        val_labels=lambda wildcards: (
            config["data"]["val_labels"]
            if wildcards.split == "val" and config["data"]["val_labels"]
            else []
        ),
    output:
        lst="results/lists/{split}.lst",
    log:
        "logs/lists/{split}.log",
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        raw_fingerprint=lambda wildcards: get_raw_fingerprint(wildcards.split),
        seed=config["data"]["list_seed"],
        code=get_code_digest("make_list.py"),
    script:
        "../scripts/make_list.py"


rule pack_records:
    input:
        lst="results/lists/{split}.lst",
        raw=f"{RAW_DIR}/{{split}}",
    output:
        rec="results/records/{split}.rec",
        idx="results/records/{split}.idx",
        rejected="results/records/{split}.rejected.tsv",
    log:
        "logs/records/{split}.log",
    benchmark:
        "logs/timing/records/{split}.tsv"
    conda:
        "../envs/resnet-recipe.yaml"
    threads: config["data"]["pack_threads"]
    params:
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
        code=get_code_digest("pack_records.py"),
    script:
        "../scripts/pack_records.py"


# Run on request (`snakemake rescan_raw_tree`; no output, so it runs every time): the
# full scan that finds images rewritten in place, which a start does not look for.
rule rescan_raw_tree:
    log:
        "logs/raw_tree/rescan.log",
    localrule: True
    conda:
        "../envs/resnet-recipe.yaml"
    params:
        split_dirs=(
            []
            if config["data"]["demo"]
            else expand(f"{RAW_DIR}/{{split}}", split=SPLITS)
        ),
        caches=(
            []
            if config["data"]["demo"]
            else [get_raw_tree_cache(split) for split in SPLITS]
        ),
    script:
        "../scripts/rescan_raw_tree.py"
