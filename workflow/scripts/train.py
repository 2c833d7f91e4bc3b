"""Stage entry point of the train rule: one run of the training matrix."""

from resnet_recipe.training.job import TrainingJob
from resnet_recipe.training.run import train
from resnet_recipe.workflow_support.progress import stage_log
from resnet_recipe.workflow_support.settings import (
    Distributed,
    InputPipeline,
    Network,
    run_settings,
)

# Settings come from the config; the rule's params are the rerun triggers, which leave out
# what only changes logging or speed (common.smk).
config = snakemake.config
run = snakemake.wildcards.run
with stage_log(snakemake.log[0], train.__module__, "train"):
    job = TrainingJob(
        train_rec=snakemake.input.train_rec,
        train_idx=snakemake.input.train_idx,
        val_rec=snakemake.input.val_rec,
        val_idx=snakemake.input.val_idx,
        classes_tsv=snakemake.input.classes,
        out_dir=snakemake.output.model,
        state_root=snakemake.params.state_root,
        settings=run_settings(config, run),
        network_settings=Network.from_config(config["network"], "network"),
        pipeline_settings=InputPipeline.from_config(config["input"], "input"),
        lock_dir=snakemake.params.lock_dir,
        run=run,
        distributed_settings=Distributed.from_config(snakemake.params.distributed, "distributed"),
    )
    train(job)
