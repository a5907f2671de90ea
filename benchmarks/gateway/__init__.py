"""Side-by-side gateway benchmark: direct to a replica, through Lingyun, through LiteLLM.

Run it with ``make bench`` (full matrix) or ``python -m benchmarks.gateway --quick``.
"""
