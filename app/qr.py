"""QR codes for a campaign's page, and the placement tags they carry.

A QR code on a poster, a receipt or a table card encodes the page's address and
nothing else: `{OPTIN_PUBLIC_URL}/{keyword}?src=TAG` (`app.consent.page_url`), so the
signup it leads to records which placement it came from, and the code stays as small
(as few modules) as that text allows. Error correction M, as segno is told, never
raised; the quiet zone is the 4 modules the standard asks for.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

# A placement tag: short, and plain enough to print, to type and to read in an export.
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SCALE = 1
MAX_SCALE = 40
# 10 pixels (or SVG units) a module: a page's code is about 370 pixels wide.
DEFAULT_SCALE = 10
QUIET_ZONE = 4
ERROR_CORRECTION = "M"


class BadParameter(ValueError):
    """A query parameter of a QR code or a poster is not one it takes; the message says
    which and what it must be."""


class Kind(Enum):
    SVG = "svg"
    PNG = "png"

    @property
    def media_type(self) -> str:
        return "image/svg+xml" if self is Kind.SVG else "image/png"


@dataclass(frozen=True, slots=True)
class QRImage:
    body: bytes
    media_type: str
    # A strong validator made from the bytes themselves: the same text, kind and scale
    # give the same bytes, on every replica and after every restart.
    etag: str


def placement(value: str | None) -> str | None:
    """The `src` parameter checked: None when absent, else 1-64 of A-Z a-z 0-9 . _ -."""
    if value is None:
        return None
    if not SOURCE_PATTERN.fullmatch(value):
        raise BadParameter(
            "src must be 1 to 64 letters, digits, dots, dashes or underscores (such as src=poster-12); "
            "leave it out for none."
        )
    return value


def scale_of(value: str | None) -> int:
    """The `scale` parameter checked: pixels (or SVG units) a module, DEFAULT_SCALE when absent."""
    if value is None:
        return DEFAULT_SCALE
    if not (value.isascii() and value.isdigit()) or not MIN_SCALE <= int(value) <= MAX_SCALE:
        raise BadParameter(
            f"scale must be a whole number from {MIN_SCALE} to {MAX_SCALE} (the default is {DEFAULT_SCALE})."
        )
    return int(value)


@lru_cache(maxsize=256)
def qr_image(text: str, kind: Kind, scale: int) -> QRImage:
    """`text` as a QR code image. Remembered: a poster and its reprints ask for the same
    few codes, and making one costs a few milliseconds of CPU."""
    # Imported at the first code asked for: a process that serves none (most) does
    # not hold segno (make bench's RSS).
    import segno

    code = segno.make_qr(text, error=ERROR_CORRECTION, boost_error=False)
    out = io.BytesIO()
    if kind is Kind.SVG:
        # A viewBox, so the code scales to whatever size a page gives it (the poster's
        # CSS), and a width and height, so it has a size of its own when opened alone.
        code.save(out, kind="svg", scale=scale, border=QUIET_ZONE, xmldecl=False, omitsize=True)
        size = code.symbol_size(scale=scale, border=QUIET_ZONE)[0]
        body = out.getvalue().replace(b" viewBox=", f' width="{size}" height="{size}" viewBox='.encode(), 1)
    else:
        code.save(out, kind="png", scale=scale, border=QUIET_ZONE)
        body = out.getvalue()
    return QRImage(body=body, media_type=kind.media_type, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"')
