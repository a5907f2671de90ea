"""A batch's lines checked against its endpoint, the model catalog and each other.

Run by the runner while the batch is ``validating``: any error fails the whole batch, with
every bad line's number in ``errors`` (OpenAI's ``{code, line, message, param}``), before a
single line is run or charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lingyun.batch.files import iter_lines, parse_line
from lingyun.errors import LingyunError
from lingyun.gateway.resolve import ModelCatalog
from lingyun.tenancy.service import KeyInfo

MAX_ERRORS = 100


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line in the input file
    custom_id: str
    body: dict[str, Any]


def validate(
    data: bytes, endpoint: str, key: KeyInfo, catalog: ModelCatalog | None
) -> tuple[list[Line], list[dict[str, Any]]]:
    """The lines, and the errors (empty when the batch may run). Without a catalog the
    models are not checked (a resumed batch: a model removed since fails on its lines)."""
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}

    def error(code: str, number: int, message: str, param: str | None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append({"code": code, "line": number, "message": message, "param": param})

    for number, raw in iter_lines(data):
        try:
            obj = parse_line(raw, number)
        except LingyunError as err:
            error("invalid_request", number, err.message, None)
            continue
        custom_id = obj["custom_id"]
        if custom_id in seen:
            error(
                "duplicate_custom_id",
                number,
                f"Line {number}: custom_id {custom_id!r} is also used on line {seen[custom_id]}.",
                "custom_id",
            )
            continue
        seen[custom_id] = number
        if obj["url"] != endpoint:
            error(
                "mismatched_endpoint",
                number,
                f"Line {number}: url {obj['url']!r} differs from the batch's endpoint "
                f"{endpoint!r}.",
                "url",
            )
            continue
        model = obj["body"].get("model")
        if not isinstance(model, str) or not model:
            error("missing_model", number, f"Line {number}: body has no model.", "body.model")
            continue
        try:
            if catalog is not None:
                catalog.resolve(key, model)
        except LingyunError:
            error(
                "model_not_found",
                number,
                f"Line {number}: the model {model!r} does not exist or you do not have access.",
                "body.model",
            )
            continue
        lines.append(Line(number, custom_id, obj["body"]))
    if not lines and not errors:
        errors.append({"code": "empty_file", "line": None, "message": "No lines.", "param": None})
    return lines, errors
