"""Reading what a browser posts: size-capped, strictly decoded, only the fields we use.

Anything malformed is a plain 4xx with a clear message, never a 5xx and never a
silently mangled value (Starlette's parser would swap broken UTF-8 for U+FFFD).
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import parse_qsl

from starlette.requests import Request

FORM_TYPE = "application/x-www-form-urlencoded"
# Generous for a phone number and a few hidden fields; caps what a bot can make us hold.
MAX_FIELD_LENGTH = 1024
MAX_FIELDS = 20


class MalformedForm(Exception):
    """The body is not a form we can read; `message` says why."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request, *, fields: Collection[str]) -> dict[str, str]:
    """The named fields of a urlencoded form (first value of each; absent ones left out)."""
    if media_type(request) != FORM_TYPE:
        raise MalformedForm(f"send the form as {FORM_TYPE}", status_code=415)
    body = await request.body()  # size-capped by security.BodyLimit
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS
        )
    except UnicodeDecodeError:
        raise MalformedForm("the form is not valid UTF-8") from None
    except ValueError:
        raise MalformedForm("the form has too many fields") from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and name not in values:
            if len(value) > MAX_FIELD_LENGTH or "\x00" in value:
                raise MalformedForm(f"the field {name!r} is too long or holds a NUL byte")
            values[name] = value
    return values
