"""Stage entry point of the score rule: one training run's checkpoint on the validation set."""

from resnet_recipe.scoring.evaluation import score_run
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import InputPipeline, Score

# Settings come from the config; the rule's params are the rerun triggers, which leave out
# what only changes speed (common.smk).
config = snakemake.config
run_logged(
    snakemake.log[0],
    score_run,
    result_path=snakemake.output.score,
    run_dir=snakemake.input.model,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    score_settings=Score.from_config(config["score"], "score"),
    pipeline_settings=InputPipeline.from_config(config["input"], "input"),
    lock_dir=snakemake.params.lock_dir,
    run=snakemake.wildcards.run,
)
