"""Observability: Prometheus metrics, the request log, request ids, health and traces.

The request path calls in at three points (``hooks.py``): ``bind`` when a request's context
exists, ``queued`` around the capacity queue, and ``observe`` once when it finishes. Nothing
here ever raises into the request path.
"""
