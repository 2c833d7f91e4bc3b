"""Stage entry point of the score rule: one training run's checkpoint on the validation set."""

from resnet_recipe.evaluation import score_run
from resnet_recipe.progress import run_logged
from resnet_recipe.settings import InputPipeline, Score

# dali_threads changes the speed, not the score: from the config, not a param (common.smk).
pipeline = {**snakemake.params.pipeline, "dali_threads": snakemake.config["input"]["dali_threads"]}
run_logged(
    snakemake.log[0],
    score_run,
    result_path=snakemake.output.score,
    run_dir=snakemake.input.model,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    score_settings=Score.from_config(snakemake.params.score, "score"),
    pipeline_settings=InputPipeline.from_config(pipeline, "input"),
    lock_dir=snakemake.params.lock_dir,
    run=snakemake.wildcards.run,
)
