"""Stage entry point of the bench_infer rule: one (dtype, batch) inference point."""

from resnet_recipe.progress import run_logged
from resnet_recipe.throughput import bench_infer

run_logged(
    snakemake.log[0],
    bench_infer,
    result_path=snakemake.output.result,
    rec=snakemake.input.rec,
    idx=snakemake.input.idx,
    classes_tsv=snakemake.input.classes,
    dtype=snakemake.wildcards.dtype,
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=snakemake.params.bench,
    network_settings=snakemake.params.network,
    pipeline_settings=snakemake.params.pipeline,
    lock_dir=snakemake.params.lock_dir,
)
