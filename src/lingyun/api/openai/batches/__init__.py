"""``/v1/batches``: create, retrieve, list and cancel batch jobs."""
