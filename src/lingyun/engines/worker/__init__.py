"""Our worker server: an OpenAI-compatible HTTP server around engines that have none.

``lingyun worker --backend {transformers,embeddings,simulator}`` runs one replica; the gateway
talks to it exactly as to vLLM or llama.cpp's server. Backends are imported lazily by name
(see :data:`lingyun.engines.worker.backend.BACKENDS`) so importing this package never imports
torch.
"""
