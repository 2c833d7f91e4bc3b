"""Stage entry point of the score_onnx rule: a run's model.onnx against MXNet."""

from resnet_recipe.onnx_inference import score_onnx
from resnet_recipe.progress import run_logged

run_logged(
    snakemake.log[0],
    score_onnx,
    result_path=snakemake.output.parity,
    model_path=snakemake.input.onnx,
    run_dir=snakemake.input.model,
    epoch=snakemake.params.epoch,
    val_rec=snakemake.input.val_rec,
    val_idx=snakemake.input.val_idx,
    batch_size=snakemake.params.batch_size,
    pipeline_settings=snakemake.params.pipeline,
    logit_tolerance=snakemake.params.logit_tolerance,
    threads=snakemake.threads,
    run=snakemake.wildcards.run,
)
