"""Stage entry point of the train rule: one run of the training matrix."""

from resnet_recipe.progress import run_logged
from resnet_recipe.training import train

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
    settings=snakemake.params.settings,
    network_settings=snakemake.params.network,
    pipeline_settings=snakemake.params.pipeline,
    lock_dir=snakemake.params.lock_dir,
    run=snakemake.wildcards.run,
)
