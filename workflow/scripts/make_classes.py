"""Stage entry point of the make_classes rule: classes.tsv from the train class folders."""

from resnet_recipe.data.listing import write_classes
from resnet_recipe.workflow_support.progress import run_logged

run_logged(
    snakemake.log[0],
    write_classes,
    train_dir=snakemake.input.train,
    classes_tsv=snakemake.output.classes,
    names_path=snakemake.input.names or None,
)
