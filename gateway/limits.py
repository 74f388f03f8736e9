"""Declared ranges for what a client may send, shared by every dialect's request models.

Every number that reaches a protobuf field gets that field's range (a seed past int64 or a page past int32 would
fail to pack and escape as a 500); every list and free-form object gets a cap (one request must not amplify into
megabytes of work or answer); every id gets a length cap (ids are echoed into URLs and errors). A value outside
its range fails request validation, which each dialect renders as its documented 400.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, Field

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Seeds travel as `optional int64 seed`; -1 is the seeds' "random".
SEED_MAX = INT64_MAX
# Numbers inside free-form objects become google.protobuf.Struct values (doubles): integers past 2^53 lose digits.
JSON_INT_MAX = 2**53

# Ids the mesh issues (job ids, image refs, execution ids, task ids) are far shorter; a client's id past this is
# refused before any RPC, so it is never echoed into URLs, error messages or gRPC metadata.
MAX_ID_CHARS = 128
# URLs a client gives for webhooks (image_url may also be a data URI, bounded by the image limit instead).
MAX_URL_CHARS = 2048
# Names a client picks from a catalogue (models, platforms, workflows, samplers).
MAX_NAME_CHARS = 200
# Text fields that are prompts but whose dialect gives no number (the services' prompt limit applies after this).
MAX_PROMPT_FIELD_CHARS = 10_000
# Lists of names in a request (models to run, platforms to crop for, statuses to filter on).
MAX_LIST_ITEMS = 20
# Free-form objects (Image Studio `options`, Freepik `custom_params`, A1111 `override_settings` and scripts).
FREE_FORM_MAX_DEPTH = 8
FREE_FORM_MAX_ITEMS = 64
FREE_FORM_MAX_STRING = 10_000

IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, description="An id issued by this API")]
NamePath = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]


def check_json(value: Any, field: str = "value", depth: int = 0) -> Any:
    """Raises ValueError when a free-form JSON value is deeper, wider, longer or larger than the caps."""
    if depth > FREE_FORM_MAX_DEPTH:
        raise ValueError(f"{field} is nested deeper than {FREE_FORM_MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) > FREE_FORM_MAX_ITEMS:
            raise ValueError(f"{field} has more than {FREE_FORM_MAX_ITEMS} keys")
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_NAME_CHARS:
                raise ValueError(f"{field} has a key longer than {MAX_NAME_CHARS} characters")
            check_json(item, f"{field}.{key[:50]}", depth + 1)
    elif isinstance(value, list):
        if len(value) > FREE_FORM_MAX_ITEMS:
            raise ValueError(f"{field} has more than {FREE_FORM_MAX_ITEMS} items")
        for index, item in enumerate(value):
            check_json(item, f"{field}[{index}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > FREE_FORM_MAX_STRING:
            raise ValueError(f"{field} is longer than {FREE_FORM_MAX_STRING} characters")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if abs(value) > JSON_INT_MAX:
            raise ValueError(f"{field} is outside -2^53..2^53")
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > float(JSON_INT_MAX):
            raise ValueError(f"{field} is not a finite number within -2^53..2^53")
    else:  # pragma: no cover - JSON has no other types
        raise ValueError(f"{field} is not JSON")
    return value


def _free_form(value: dict[str, Any]) -> dict[str, Any]:
    return check_json(value, "object")


def _free_list(value: list[Any]) -> list[Any]:
    return check_json(value, "list")


# A free-form JSON object: at most FREE_FORM_MAX_ITEMS keys per level, FREE_FORM_MAX_DEPTH levels, finite numbers.
FreeForm = Annotated[dict[str, Any], AfterValidator(_free_form), Field(max_length=FREE_FORM_MAX_ITEMS)]
FreeList = Annotated[list[Any], AfterValidator(_free_list), Field(max_length=FREE_FORM_MAX_ITEMS)]
# A short name from a catalogue, and a list of them (capped).
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
Names = Annotated[list[Name], Field(max_length=MAX_LIST_ITEMS)]


def deduplicated(values: list[str]) -> list[str]:
    """The list without repeats, first occurrence kept."""
    return list(dict.fromkeys(values))
