"""What differs between the measured build and setup and the reference's, so that a
measured/reference ratio is never read as like for like when it is not.

The reference numbers come from NVIDIA's mxnet:18.12-py3 container (CUDA 10.0.130, cuDNN
7.4.1, DALI 0.5.0 in its release notes), whose MXNet build had NVIDIA's own fused BN-ReLU
and BN-add-ReLU kernels and cuDNN algorithm options that upstream MXNet 1.9.1 lacks (the
original resnet.py L76-85, L121-137 at its first release), trained float16 in NHWC and
float32 in NCHW (runner L69-74) with no loss scaling (fit.py L266-270). It measured
throughput by the interval between unwaited batch ends, each epoch's first batch left out
(fit.py L379-413), as the benchmark points' images_per_s here are measured: no difference.

differences() is the one list: each entry reads what the results carry (their versions,
MXNet build features from `provenance` where a result has it, layout, loss scale) and says
what the reference had. Add an entry there for any further difference.
"""

from resnet_recipe.workflow_support.settings import Network

REFERENCE_BUILD = (
    "NVIDIA's MXNet build in container mxnet:18.12-py3 (CUDA 10.0.130, cuDNN 7.4.1), with "
    "fused BN-ReLU and BN-add-ReLU kernels and cuDNN algorithm options"
)
REFERENCE_DALI = "DALI 0.5.0"
REFERENCE_LAYOUT = {"float16": "NHWC", "float32": "NCHW"}
REFERENCE_LOSS_SCALE = "none (float16 multi-precision SGD only)"


def differences(runs, bench_train, bench_infer):
    """[(aspect, reference, measured here)] for every way the given results differ from
    the reference's experiment: runs are training report.json contents, bench_train and
    bench_infer benchmark points. Empty when nothing was given."""
    results = [*runs, *bench_train, *bench_infer]
    if not results:
        return []
    rows = [
        ("MXNet build", REFERENCE_BUILD, _measured_builds(results)),
        ("DALI", REFERENCE_DALI, _joined(_versions(r).get("nvidia-dali") for r in results)),
    ]
    layouts = _measured_layouts(runs, [*bench_train, *bench_infer])
    for dtype, measured in sorted(layouts.items()):
        if measured != {REFERENCE_LAYOUT[dtype]}:
            rows.append((f"{dtype} layout", REFERENCE_LAYOUT[dtype], _joined(measured)))
    scales = {
        _loss_scale(result["settings"].get("loss_scale"))
        for result in [*runs, *bench_train]
        if result["dtype"] == "float16" and "settings" in result
    }
    if scales - {"none"}:
        rows.append(("float16 loss scaling", REFERENCE_LOSS_SCALE, _joined(scales)))
    return rows


def _versions(result):
    """Package versions of a result: a benchmark point's `versions`, a run's machine's."""
    return result.get("versions") or result.get("machine", {}).get("versions", {})


def _measured_builds(results):
    builds = set()
    for result in results:
        build = f"MXNet {_versions(result).get('mxnet', 'unknown')} (upstream)"
        features = result.get("provenance", {}).get("mxnet_features")
        if features:
            enabled = [name for name, on in sorted(features.items()) if on]
            build += f" with {', '.join(enabled) or 'no CUDA'}"
        builds.add(build + ", without the fused kernels")
    return _joined(builds)


def _measured_layouts(runs, points):
    """{dtype: the layouts measured in it}, from benchmark points and training runs."""
    layouts = {}
    for point in points:
        layouts.setdefault(point["dtype"], set()).add(point["layout"])
    for run in runs:
        network = Network.from_config(run.get("network", {}), f"run {run['run']} network")
        layouts.setdefault(run["dtype"], set()).add(network.layout_for(run["dtype"]))
    return layouts


def _loss_scale(value):
    return "none" if value in (None, "none") else str(value)


def _joined(values):
    return ", ".join(sorted({str(value) for value in values if value is not None})) or "unknown"
