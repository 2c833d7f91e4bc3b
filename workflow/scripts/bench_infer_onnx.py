"""Stage entry point of the bench_infer_onnx rule: one onnxruntime inference point."""

from resnet_recipe.onnx_inference import bench_infer_onnxruntime
from resnet_recipe.progress import run_logged
from resnet_recipe.settings import BenchInfer, InputPipeline, Network
from resnet_recipe.throughput import BenchSetup

run_logged(
    snakemake.log[0],
    bench_infer_onnxruntime,
    result_path=snakemake.output.result,
    setup=BenchSetup(
        rec=snakemake.input.rec,
        idx=snakemake.input.idx,
        classes_tsv=snakemake.input.classes,
        network=Network.from_config(snakemake.params.network, "network"),
        pipeline=InputPipeline.from_config(snakemake.params.pipeline, "input"),
        lock_dir=snakemake.params.lock_dir,
    ),
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=BenchInfer.from_config(snakemake.params.bench, "benchmark.infer"),
    threads=snakemake.threads,
)
