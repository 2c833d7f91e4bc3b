"""The model and the recipe that trains it.

network.py    ResNet v1 and v1.5 (NCHW, NHWC) and its checkpoints in MXNet's format
recipe.py     learning-rate schedules, the optimizer, weight decay rules, the loss
precision.py  float16: where it runs, what is cast, master weights, loss scaling
"""
