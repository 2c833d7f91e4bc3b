"""Throughput benchmarks in the original benchmark.py's manner.

throughput.py  one training or inference point per call, and the summary of all points
point_logs.py  a point's DLLogger log, beside its JSON result
"""
