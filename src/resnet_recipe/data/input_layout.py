"""The shape of a batch as the network takes it in each layout: NCHW with the 3 colour
channels, or NHWC padded to 4 channels with a zero one, as the original's DALI pipelines
padded float16 batches (pad_output of crop-mirror-normalize, dali.py L112)."""

# Colour channels of the images, and the channels the network takes in each layout.
IMAGE_CHANNELS = 3
INPUT_CHANNELS = {"NCHW": IMAGE_CHANNELS, "NHWC": 4}


def input_shape(layout, batch, size):
    """Shape of a batch of `size` x `size` images as the network takes them in `layout`."""
    channels = INPUT_CHANNELS[layout]
    if layout == "NHWC":
        return (batch, size, size, channels)
    return (batch, channels, size, size)
