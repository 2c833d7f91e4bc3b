"""Deployment: a trained run as ONNX, and onnxruntime's parity and speed.

onnx_export.py     model.onnx (float32, NCHW) from a run's checkpoint
onnx_inference.py  onnxruntime parity with MXNet on the validation set, and throughput
"""
