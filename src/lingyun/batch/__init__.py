"""The OpenAI Files and Batch API: stored JSONL inputs, batch jobs run in spare capacity.

files.py      file bytes on disk, their rows, JSONL validation at upload
service.py    batches: create, read, list, cancel (the API's and the CLI's one door)
validate.py   a batch's lines against its endpoint, the catalog and each other
lines.py      one line through the gateway pipeline, in process, in the batch lane
runner.py     the background task: validate, run, record, finalize, expire
wire.py       rows -> OpenAI's JSON objects
"""
