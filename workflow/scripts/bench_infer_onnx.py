"""Stage entry point of the bench_infer_onnx rule: one onnxruntime inference point."""

from resnet_recipe.onnx_inference import bench_infer_onnxruntime
from resnet_recipe.progress import run_logged

run_logged(
    snakemake.log[0],
    bench_infer_onnxruntime,
    result_path=snakemake.output.result,
    rec=snakemake.input.rec,
    idx=snakemake.input.idx,
    classes_tsv=snakemake.input.classes,
    batch_size=int(snakemake.wildcards.batch),
    bench_settings=snakemake.params.bench,
    network_settings=snakemake.params.network,
    pipeline_settings=snakemake.params.pipeline,
    threads=snakemake.threads,
)
