"""Settings: the values every stage shares, and their domains.

This module imports neither MXNet nor DALI, so the command line and the report can read it.
"""

# Training and inference precisions, in the order the report and the tables show them.
DTYPES = ("float16", "float32")
