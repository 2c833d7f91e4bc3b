"""Stage entry point of the bench_train rule: one (dtype, gpus, batch) training point."""

from resnet_recipe.progress import run_logged
from resnet_recipe.settings import BenchTrain, InputPipeline, Network, TrainingRun
from resnet_recipe.throughput import BenchSetup, bench_train

run_logged(
    snakemake.log[0],
    bench_train,
    result_path=snakemake.output.result,
    setup=BenchSetup(
        rec=snakemake.input.rec,
        idx=snakemake.input.idx,
        classes_tsv=snakemake.input.classes,
        network=Network.from_config(snakemake.params.network, "network"),
        pipeline=InputPipeline.from_config(snakemake.params.pipeline, "input"),
        lock_dir=snakemake.params.lock_dir,
        val_rec=snakemake.input.val_rec,
        val_idx=snakemake.input.val_idx,
    ),
    dtype=snakemake.wildcards.dtype,
    gpus=int(snakemake.wildcards.gpus),
    batch_per_device=int(snakemake.wildcards.batch),
    bench_settings=BenchTrain.from_config(snakemake.params.bench, "benchmark.train"),
    run_settings=TrainingRun.from_config(snakemake.params.training, "training.defaults"),
)
