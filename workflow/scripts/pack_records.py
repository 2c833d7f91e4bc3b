"""Stage entry point of the pack_records rule: one split's list -> .rec, .idx, rejected.tsv."""

from resnet_recipe.data.records import pack_records
from resnet_recipe.workflow_support.progress import run_logged

run_logged(
    snakemake.log[0],
    pack_records,
    lst_path=snakemake.input.lst,
    root=snakemake.input.raw,
    rec_path=snakemake.output.rec,
    idx_path=snakemake.output.idx,
    rejected_path=snakemake.output.rejected,
    workers=snakemake.threads,
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
)
