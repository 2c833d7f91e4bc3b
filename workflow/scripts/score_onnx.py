"""Stage entry point of the score_onnx rule: a run's model.onnx against MXNet."""

from resnet_recipe.deployment.onnx_inference import score_onnx
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import InputPipeline, Onnx, Score

# Settings come from the config; the rule's params are the rerun triggers, which leave out
# what only changes speed (common.smk).
config = snakemake.config
run_logged(
    snakemake.log[0],
    score_onnx,
    result_path=snakemake.output.parity,
    model_path=snakemake.input.onnx,
    run_dir=snakemake.input.model,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    score_settings=Score.from_config(config["score"], "score"),
    pipeline_settings=InputPipeline.from_config(config["input"], "input"),
    onnx_settings=Onnx.from_config(config["onnx"], "onnx"),
    threads=snakemake.threads,
    run=snakemake.wildcards.run,
)
