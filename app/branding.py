"""A campaign's look: its logo, accent colour and theme, as files the service serves.

Everything goes through stylesheets and images served from the service itself, never
inline styles (the pages' CSP allows none) and never a third party. Each asset's URL
holds a hash of its bytes, `/assets/<hash>.<ext>`, so it can be cached for a year: a
new logo is a new URL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

MAX_LOGO_BYTES = 100 * 1024
# What a logo may be, by its file's suffix; each checked by its first bytes too, so a
# renamed file of another kind is refused at start-up rather than shown broken.
LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".webp": "image/webp"}
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
# The button's text is white; WCAG 2's AA contrast for normal text.
BUTTON_TEXT = "#ffffff"
MIN_CONTRAST = 4.5


class BrandError(ValueError):
    """A branding key that cannot be used; the message says why (not which file)."""


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # "<hash>.<ext>": the last part of its URL
    content_type: str
    body: bytes

    @property
    def url(self) -> str:
        return f"/assets/{self.name}"


def asset(body: bytes, ext: str, content_type: str) -> Asset:
    return Asset(f"{hashlib.sha256(body).hexdigest()[:20]}{ext}", content_type, body)


def hex_color(value: str) -> str:
    """`#rgb` or `#rrggbb`, as `#rrggbb` lower-case."""
    if not _HEX.fullmatch(value):
        raise BrandError("must be a hex colour such as #0b57d0")
    digits = value[1:].lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def contrast(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two `#rrggbb` colours, 1 to 21. (The formula is a few
    lines; no library of it is worth a dependency.)"""

    def luminance(color: str) -> float:
        channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def accent(value: str) -> str:
    color = hex_color(value)
    ratio = contrast(color, BUTTON_TEXT)
    if ratio < MIN_CONTRAST:
        raise BrandError(
            f"{color} has a contrast of {ratio:.1f}:1 with the button's white text; "
            f"it needs at least {MIN_CONTRAST}:1 (a darker colour)"
        )
    return color


def load_logo(path: Path) -> Asset:
    """The logo file at `path`, checked: a PNG, SVG or WebP file of at most 100 KB."""
    content_type = LOGO_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise BrandError(f"must be a {', '.join(LOGO_TYPES)} file")
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise BrandError(f"no such file: {path}") from None
    except OSError as exc:
        raise BrandError(f"cannot read {path}: {exc.strerror}") from None
    if len(body) > MAX_LOGO_BYTES:
        raise BrandError(f"{path.name} is {len(body) // 1024} KB; at most {MAX_LOGO_BYTES // 1024} KB")
    if not _looks_like(body, content_type):
        raise BrandError(f"{path.name} is not a {content_type} file")
    return asset(body, path.suffix.lower(), content_type)


def _looks_like(body: bytes, content_type: str) -> bool:
    if content_type == "image/png":
        return body.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "image/webp":
        return body[:4] == b"RIFF" and body[8:12] == b"WEBP"
    return b"<svg" in body[:4096]


def stylesheet(accent_color: str) -> Asset:
    """The campaign's own stylesheet: its colour, as the custom property style.css reads."""
    css = f":root{{--accent:{accent_color}}}\n".encode()
    return asset(css, ".css", "text/css; charset=utf-8")
