"""ResNet-50 v1.5 on MXNet and DALI: the pieces every workflow stage is made of.

Layers, lowest first; a module imports only from its own layer and the layers below it
(tests/unit/test_layers.py checks it):

    files             byte-level formats and atomic writes
    workflow_support  settings, result-file contracts, provenance, code digests, devices, logging
    data              raw image trees -> lists -> RecordIO; input pipelines
    model             the network, the recipe (schedule, optimizer, loss), precision
    scoring           evaluation of a network on the validation set; device-honest timing
    training          the loop, its checkpoints, and runs over several nodes
    benchmarking      throughput points and their summary
    deployment        ONNX export and onnxruntime inference
    report            the aggregated report, and comparing two result folders
    cli.py            the `resnet-recipe` command, one sub-command per stage
"""
