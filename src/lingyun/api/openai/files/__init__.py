"""``/v1/files``: upload, list, retrieve, download and delete batch input and output files."""
