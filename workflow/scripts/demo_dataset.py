"""Stage entry point of the demo_dataset rule: the digits demo tree in raw_dir."""

import os

from resnet_recipe.data.demo_data import write_demo_tree
from resnet_recipe.workflow_support.progress import run_logged

run_logged(snakemake.log[0], write_demo_tree, root=os.path.dirname(snakemake.output.train))
