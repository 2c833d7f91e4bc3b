"""Stage entry point of the bench_summary rule: the original benchmark.py report per kind."""

from resnet_recipe.progress import run_logged
from resnet_recipe.throughput import summarize

run_logged(
    snakemake.log[0],
    summarize,
    train_files=list(snakemake.input.train),
    infer_files=list(snakemake.input.infer),
    train_path=snakemake.output.train,
    infer_path=snakemake.output.infer,
)
