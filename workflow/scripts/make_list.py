"""Stage entry point of the make_list rule: the im2rec list of one split."""

from resnet_recipe.data.listing import make_list
from resnet_recipe.workflow_support.progress import run_logged

run_logged(
    snakemake.log[0],
    make_list,
    split_dir=snakemake.input.raw,
    classes_tsv=snakemake.input.classes,
    lst_path=snakemake.output.lst,
    shuffle_seed=snakemake.params.seed if snakemake.wildcards.split == "train" else None,
    val_labels=snakemake.input.val_labels or None,
)
