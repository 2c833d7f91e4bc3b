"""Stage entry point of the bench_infer_onnx rule: one onnxruntime inference point."""

from resnet_recipe.benchmarking.throughput import BenchSetup
from resnet_recipe.deployment.onnx_inference import bench_infer_onnxruntime
from resnet_recipe.workflow_support.progress import run_logged
from resnet_recipe.workflow_support.settings import BenchInfer

run_logged(
    snakemake.log[0],
    bench_infer_onnxruntime,
    result_path=snakemake.output.result,
    setup=BenchSetup.of_rule(snakemake.input, snakemake.params),
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=BenchInfer.from_config(snakemake.params.bench, "benchmark.infer"),
    threads=snakemake.threads,
)
