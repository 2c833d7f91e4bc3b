"""Data: raw JPEG trees to im2rec lists to pass-through RecordIO, and the input pipelines.

listing.py      raw image trees -> .lst files and the label mapping (classes.tsv)
image_check.py  which files pack as they are, which need re-encoding, which are broken
records.py      a .lst and its images -> .rec + .idx (+ rejected.tsv), in N workers
demo_data.py    the embedded demo dataset (scikit-learn's digits), written as a tree
input_layout.py the shape of a batch as the network takes it (NCHW, NHWC padded to 4)
pipelines.py    DALI training and validation pipelines over .rec/.idx, and synthetic data
"""
