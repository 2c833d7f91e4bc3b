# ResNet-50 v1.5 on MXNet and DALI: raw JPEGs -> RecordIO -> training -> scoring and
# benchmarks -> report. The config comes from --configfile (profiles/default uses the demo).
from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


# Quick jobs that a cluster would only queue: run by Snakemake itself.
localrules:
    all,
    demo_dataset,
    make_classes,
    make_list,
    bench_summary,
    report,


wildcard_constraints:
    split="train|val",
    run="|".join(TRAIN_RUNS) or "no-runs-configured",
    dtype="float16|float32",
    gpus=r"\d+",
    batch=r"\d+",


rule all:
    default_target: True
    input:
        get_final_outputs(),
