"""Stage entry point of the rescan_raw_tree rule: fingerprint every raw file again."""

from resnet_recipe.data.listing import rescan_raw_trees
from resnet_recipe.workflow_support.progress import run_logged

run_logged(
    snakemake.log[0],
    rescan_raw_trees,
    split_dirs=snakemake.params.split_dirs,
    cache_paths=snakemake.params.caches,
)
