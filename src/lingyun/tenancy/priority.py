"""Request priorities: which band of a deployment's capacity queue a key's requests join.

Stored on a project and optionally on a key (the key's wins); neither set means
``standard``. The queue serves ``interactive`` first, then ``standard``, then ``batch``
(``admission/capacity.py``); a Batch API line is always in the batch band, whatever its
key says. Stored values are these lowercase names and are never renamed.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from lingyun.errors import InvalidRequestError

Priority = Literal["interactive", "standard", "batch"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
DEFAULT_PRIORITY = "standard"


def checked(value: str | None) -> Priority | None:
    """``value`` if it is a priority (or None, to clear it); else a 400 naming the choices."""
    if value is not None and value not in PRIORITIES:
        raise InvalidRequestError(
            f"priority must be one of {', '.join(PRIORITIES)} (or null to clear it), "
            f"not {value!r}.",
            param="priority",
        )
    return cast(Priority | None, value)


def effective(key_priority: str | None, project_priority: str | None) -> str:
    return key_priority or project_priority or DEFAULT_PRIORITY
