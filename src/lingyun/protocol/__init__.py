"""The OpenAI HTTP API as Lingyun speaks it at every edge: the API, the gateway and our
worker servers all import it; it imports none of them.

    wire.py    request models, their bounds, ``parse_request`` (one OpenAI-shaped 400)
    errors.py  every error rendered as ``{"error": {...}}`` by a FastAPI app
"""
