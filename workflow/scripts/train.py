"""Stage entry point of the train rule: one run of the training matrix."""

from resnet_recipe.progress import run_logged
from resnet_recipe.training import train

# log_interval and dali_threads change the log and the speed, not the model: they come from
# the config, not from params, so that changing them reruns nothing (common.smk).
training = snakemake.config["training"]
run_settings = {**training["defaults"], **training["runs"][snakemake.wildcards.run]}

run_logged(
    snakemake.log[0],
    train,
    train_rec=snakemake.input.train_rec,
    train_idx=snakemake.input.train_idx,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    classes_tsv=snakemake.input.classes,
    out_dir=snakemake.output.model,
    state_root=snakemake.params.state_dir,
    settings={**snakemake.params.settings, "log_interval": run_settings["log_interval"]},
    network_settings=snakemake.params.network,
    pipeline_settings={
        **snakemake.params.pipeline,
        "dali_threads": snakemake.config["input"]["dali_threads"],
    },
    lock_dir=snakemake.params.lock_dir,
    run=snakemake.wildcards.run,
)
