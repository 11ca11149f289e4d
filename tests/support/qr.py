"""QR codes read back as a phone's camera app would: zxing-cpp, the reader behind many
of them, over the image's pixels (Pillow opens the PNG).

    (code,) = read_qr(png_bytes)       # every QR code found in the picture
    code.text, code.ec_level           # what it says; its error correction ("M")
"""

from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image


def read_qr(image: bytes | Image.Image) -> list[zxingcpp.Barcode]:
    """The QR codes in `image` (PNG bytes, or a picture already opened)."""
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    return zxingcpp.read_barcodes(picture.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)


def svg_modules(d: str) -> set[tuple[int, int]]:
    """The dark modules (column, row) that segno's SVG path draws: an absolute move to
    the first run, then relative moves ("m3 0", "m-33 1") and horizontal runs ("h7"),
    each run one module high, centred on its row (hence the half in "M4 4.5")."""
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, first, second in re.findall(r"([Mmh])(-?[\d.]+)(?:[ ,](-?[\d.]+))?", d):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:
            run = int(float(first))
            dark.update((int(x) + i, int(y)) for i in range(run))
            x += run
    return dark


def picture_of(dark: set[tuple[int, int]], size: int, *, scale: int = 4) -> Image.Image:
    """The modules drawn black on white, `scale` pixels each, `size` modules square."""
    picture = Image.new("L", (size * scale, size * scale), 255)
    for column, row in dark:
        picture.paste(0, (column * scale, row * scale, (column + 1) * scale, (row + 1) * scale))
    return picture
