"""Fixtures of the stage tests: tiny trained runs (one per test module that asks)."""

import pytest
from helpers.tiny import NHWC_NETWORK, TINY_NETWORK, train_tiny_run


@pytest.fixture(scope="module")
def trained_run(make_tiny_rec, tmp_path_factory):
    """A 2-epoch run on three noisy colours, validated on 19 images."""
    return train_tiny_run(make_tiny_rec, tmp_path_factory, TINY_NETWORK)


@pytest.fixture(scope="module")
def nhwc_trained_run(make_tiny_rec, tmp_path_factory):
    """The same run trained in NHWC (on the CPU: convolutions by transpose)."""
    return train_tiny_run(make_tiny_rec, tmp_path_factory, NHWC_NETWORK)
