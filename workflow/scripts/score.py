"""Stage entry point of the score rule: one training run's checkpoint on the validation set."""

from resnet_recipe.evaluation import score_run
from resnet_recipe.progress import run_logged

run_logged(
    snakemake.log[0],
    score_run,
    result_path=snakemake.output.score,
    run_dir=snakemake.input.model,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    score_settings=snakemake.params.score,
    # dali_threads changes the speed, not the score: from the config, not a param (common.smk).
    pipeline_settings={
        **snakemake.params.pipeline,
        "dali_threads": snakemake.config["input"]["dali_threads"],
    },
    lock_dir=snakemake.params.lock_dir,
    run=snakemake.wildcards.run,
)
