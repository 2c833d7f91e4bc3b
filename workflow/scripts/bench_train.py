"""Stage entry point of the bench_train rule: one (dtype, gpus, batch) training point."""

from resnet_recipe.progress import run_logged
from resnet_recipe.throughput import bench_train

run_logged(
    snakemake.log[0],
    bench_train,
    result_path=snakemake.output.result,
    rec=snakemake.input.rec,
    idx=snakemake.input.idx,
    classes_tsv=snakemake.input.classes,
    dtype=snakemake.wildcards.dtype,
    gpus=int(snakemake.wildcards.gpus),
    batch_per_device=int(snakemake.wildcards.batch),
    bench_settings=snakemake.params.bench,
    network_settings=snakemake.params.network,
    pipeline_settings=snakemake.params.pipeline,
    lock_dir=snakemake.params.lock_dir,
)
