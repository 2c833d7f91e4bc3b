"""Stage entry point of the bench_infer rule: one (dtype, batch) inference point."""

from resnet_recipe.benchmarking.throughput import BenchSetup, bench_infer
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import BenchInfer

run_logged(
    snakemake.log[0],
    bench_infer,
    result_path=snakemake.output.result,
    setup=BenchSetup.of_rule(snakemake.input, snakemake.params),
    dtype=snakemake.wildcards.dtype,
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=BenchInfer.from_config(snakemake.params.bench, "benchmark.infer"),
)
