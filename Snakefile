# ResNet-50 v1.5 on MXNet and DALI: raw JPEGs -> RecordIO -> training -> scoring and
# benchmarks -> report. The config comes from --configfile (profiles/default uses the demo).
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# Numbers in exponent form (lr_per_256: 1e-3) are numbers, though YAML 1.1 reads them as
# text: converted by this checkout's package before the schema checks the config.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from resnet_recipe.workflow_support.settings import read_config_numbers

validate(read_config_numbers(config), "workflow/schemas/config.schema.yaml")


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
    run=one_of(TRAIN_RUNS),
    dtype="float16|float32",
    gpus=r"\d+",
    batch=r"\d+",
    batch_per_device=r"\d+",


rule all:
    default_target: True
    input:
        get_final_outputs(),
