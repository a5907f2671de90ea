"""Rows as OpenAI's JSON objects (``file``, ``batch``, list pages)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lingyun.store.batches import Batch, StoredFile


def ts(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def file_object(row: StoredFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": ts(row.created_at),
        "expires_at": ts(row.expires_at),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_object(row: Batch) -> dict[str, Any]:
    errors = None
    if row.errors:
        errors = {"object": "list", "data": row.errors}
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "errors": errors,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": ts(row.created_at),
        "in_progress_at": ts(row.in_progress_at),
        "expires_at": ts(row.expires_at),
        "finalizing_at": ts(row.finalizing_at),
        "completed_at": ts(row.completed_at),
        "failed_at": ts(row.failed_at),
        "expired_at": ts(row.expired_at),
        "cancelling_at": ts(row.cancelling_at),
        "cancelled_at": ts(row.cancelled_at),
        "request_counts": {
            "total": row.total,
            "completed": row.completed,
            "failed": row.failed,
        },
        "usage": {
            "input_tokens": row.input_tokens,
            "input_tokens_details": {"cached_tokens": row.cached_tokens},
            "output_tokens": row.output_tokens,
            "output_tokens_details": {"reasoning_tokens": row.reasoning_tokens},
            "total_tokens": row.input_tokens + row.output_tokens,
        },
        "metadata": row.metadata_,
    }


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
