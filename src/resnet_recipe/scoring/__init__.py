"""Scoring a network: what the training loop validates with and the score stage runs.

evaluation.py  loss, top-1 and top-5 over exactly the validation images; checkpoint scoring
timing.py      intervals that end with a device wait; latency percentiles
"""
