"""Stage entry point of the bench_summary rule: the original benchmark.py report per kind."""

from resnet_recipe.benchmarking.throughput import summarize
from resnet_recipe.workflow_support.progress import run_logged

run_logged(
    snakemake.log[0],
    summarize,
    train_files=list(snakemake.input.train),
    infer_files=list(snakemake.input.infer),
    train_path=snakemake.output.train,
    infer_path=snakemake.output.infer,
)
