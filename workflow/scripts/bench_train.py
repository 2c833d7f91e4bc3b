"""Stage entry point of the bench_train rule: one (dtype, gpus, batch) training point."""

from resnet_recipe.benchmarking.throughput import BenchSetup, bench_train
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import BenchTrain, TrainingRun

run_logged(
    snakemake.log[0],
    bench_train,
    result_path=snakemake.output.result,
    setup=BenchSetup.of_rule(snakemake.input, snakemake.params),
    dtype=snakemake.wildcards.dtype,
    gpus=int(snakemake.wildcards.gpus),
    batch_per_device=int(snakemake.wildcards.batch_per_device),
    bench_settings=BenchTrain.from_config(snakemake.params.bench, "benchmark.train"),
    run_settings=TrainingRun.from_config(snakemake.params.training, "training.defaults"),
)
