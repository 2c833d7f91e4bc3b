"""The ONNX parity's bookkeeping over several batches, with stand-in engines: the largest
logit difference of any batch's real images, padding never counted."""

from typing import NamedTuple

import mxnet as mx
import numpy as np
import pytest

from resnet_recipe.deployment.onnx_inference import ComparedBatches
from resnet_recipe.scoring import evaluation


class Batch(NamedTuple):
    data: mx.nd.NDArray
    label: mx.nd.NDArray
    valid: int


class OneDevice(list):
    """Validation batches of one CPU device, as pipelines.val_batches yields them."""

    contexts = [mx.cpu(0)]


def test_the_largest_logit_difference_of_any_batch_is_kept():
    """MXNet's logits are the batch itself; onnxruntime's differ by up to 0.5 in the first
    batch, 0.01 and 0.02 in the later ones, and by 100 in the last batch's padding row."""
    rng = np.random.default_rng(0)
    logits = [rng.uniform(-3, 3, size=(3, 3)) for _ in range(3)]
    offsets = [np.zeros((3, 3)) for _ in range(3)]
    offsets[0][1, 2] = 0.5
    offsets[1][0, 0] = -0.01
    offsets[2][1, 1] = 0.02
    offsets[2][2, :] = 100.0  # the padding row of the last batch
    batches = OneDevice(
        [[Batch(mx.nd.array(values), mx.nd.array([0, 1, 2]), 3)] for values in logits[:2]]
        + [[Batch(mx.nd.array(logits[2]), mx.nd.array([0, 1, 2]), 2)]]
    )
    onnx_logits = iter(values + offset for values, offset in zip(logits, offsets, strict=True))

    def onnx_forward(data):
        return mx.nd.array(next(onnx_logits), ctx=data.context)

    compared = ComparedBatches(batches, onnx_forward, lambda data: data, classes=3)
    metrics = evaluation.evaluate(compared.forward, compared, 3)
    result = compared.summary(metrics)
    assert result["images"] == 8
    assert result["max_abs_logit_difference"] == pytest.approx(0.5, abs=1e-6)
    real = np.concatenate([logits[0], logits[1], logits[2][:2]])
    assert result["max_abs_logit"] == pytest.approx(np.abs(real).max(), abs=1e-6)
