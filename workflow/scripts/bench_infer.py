"""Stage entry point of the bench_infer rule: one (dtype, batch) inference point."""

from resnet_recipe.progress import run_logged
from resnet_recipe.settings import BenchInfer
from resnet_recipe.throughput import BenchSetup, bench_infer

run_logged(
    snakemake.log[0],
    bench_infer,
    result_path=snakemake.output.result,
    setup=BenchSetup.of_rule(snakemake.input, snakemake.params),
    dtype=snakemake.wildcards.dtype,
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=BenchInfer.from_config(snakemake.params.bench, "benchmark.infer"),
)
