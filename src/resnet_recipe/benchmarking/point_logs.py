"""The DLLogger log of a benchmark point (files/dllogger_log.py), beside its JSON result
(results/bench_train/float32/n0_b8.json -> n0_b8.dllogger.json), with the later NVIDIA
MXNet recipe's metric names:

- a training point: step [epoch] for each epoch, warmup epochs included, with train.ips
  and val.ips as the point measured them, then step [] with the point's rates after
  warmup (its images_per_s and val_images_per_s);
- an inference point: step [0] for its waited latency pass (val.ips: the batch over the
  mean latency, as the later recipe's val.ips; val.latency_* in seconds), and the same
  at step [].
"""

from resnet_recipe.files import dllogger_log


def write_beside(result_path, point):
    """The log of `point` (a training or inference point's result) beside result_path."""
    dllogger_log.write_beside(result_path, entries(point))


def entries(point):
    """[(step, data)] of a point's log."""
    if point["kind"] == "train":
        rates = zip(point["epoch_images_per_s"], point["val_epoch_images_per_s"], strict=True)
        epochs = [([e], {"train.ips": t, "val.ips": v}) for e, (t, v) in enumerate(rates)]
        summary = {"train.ips": point["images_per_s"], "val.ips": point["val_images_per_s"]}
        return [*epochs, ([], summary)]
    data = {
        "val.ips": point["latency_images_per_s"],
        **dllogger_log.validation_latencies(point["latency_ms"]),
    }
    return [([0], data), ([], data)]
