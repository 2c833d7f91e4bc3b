# Raw JPEG tree -> im2rec lists -> pass-through RecordIO.


if config["data"]["demo"]:

    rule demo_dataset:
        output:
            train=directory(f"{RAW_DIR}/train"),
            val=directory(f"{RAW_DIR}/val"),
        log:
            "logs/demo_dataset.log",
        script:
            "../scripts/demo_dataset.py"


rule make_classes:
    input:
        train=f"{RAW_DIR}/train",
    output:
        classes="results/lists/classes.tsv",
    params:
        class_folders=lambda wildcards: get_class_folders(),
    log:
        "logs/lists/classes.log",
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
    params:
        raw_fingerprint=lambda wildcards: get_raw_fingerprint(wildcards.split),
        seed=config["data"]["list_seed"],
    log:
        "logs/lists/{split}.log",
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
    params:
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    threads: config["data"]["pack_threads"]
    log:
        "logs/records/{split}.log",
    script:
        "../scripts/pack_records.py"
