"""Stage entry point of the export_onnx rule: one training run as model.onnx."""

from resnet_recipe.deployment.onnx_export import export_run
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import Score

run_logged(
    snakemake.log[0],
    export_run,
    model_path=snakemake.output.onnx,
    run_dir=snakemake.input.model,
    epoch=Score.from_config({"epoch": snakemake.params.epoch}, "score").epoch,
    classes_tsv=snakemake.input.classes,
)
