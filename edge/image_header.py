"""An image's width and height from its first bytes, without decoding it.

``read_image`` checks them against a cap on decoded pixels before OpenCV allocates anything: a 2.6 MB PNG
can say 30000x30000 and decode to 2.7 GB (5.4 GB by the time it is BGR). Formats: PNG, JPEG, BMP, GIF,
WebP, TIFF (and BigTIFF) and PNM (P1-P6); for anything else the size is unknown (``None``).

Example::

    image_size(Path("street.jpg").read_bytes())     # (1280, 720)
"""
from __future__ import annotations

import re
import struct

#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` that the header of ``data`` states; None for another format or a header cut short."""
    for parse in (_png, _jpeg, _bmp, _gif, _webp, _tiff, _pnm):
        try:
            size = parse(data)
        except (struct.error, IndexError, ValueError):
            return None
        if size is not None:
            return size
    return None


def _png(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data[12:16] != b"IHDR":
            raise ValueError("no IHDR")
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while True:
        if data[i] != 0xFF:                      # stray bytes before a marker: libjpeg skips them too
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:                       # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
        elif marker in (0xD9, 0xDA):             # end of image or scan data before any frame header
            raise ValueError("no frame header")
        elif marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        else:
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]


def _bmp(data: bytes):
    if data[:2] != b"BM":
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:   # OS/2 BITMAPCOREHEADER: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)                 # a negative height: rows stored top-down


def _gif(data: bytes):
    return struct.unpack("<HH", data[6:10]) if data[:6] in (b"GIF87a", b"GIF89a") else None


def _webp(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8X":                          # extended: 24-bit canvas sides, minus one
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ValueError("unknown WebP chunk")


def _tiff(data: bytes):
    """The first page's ImageWidth (256) and ImageLength (257): the page OpenCV reads."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    if order is None:
        return None
    version = struct.unpack(order + "H", data[2:4])[0]
    if version == 42:
        offset, count, entry, head, value = struct.unpack(order + "I", data[4:8])[0], "H", 12, 2, 8
    elif version == 43:                          # BigTIFF
        offset, count, entry, head, value = struct.unpack(order + "Q", data[8:16])[0], "Q", 20, 8, 12
    else:
        return None
    entries = struct.unpack(order + count, data[offset:offset + head])[0]
    found = {}
    for n in range(entries):
        at = offset + head + n * entry
        tag, kind = struct.unpack(order + "HH", data[at:at + 4])
        if tag in (256, 257):
            code = {3: "H", 4: "I", 16: "Q"}[kind]        # SHORT, LONG, LONG8; others: not a size
            found[tag] = struct.unpack_from(order + code, data, at + value)[0]
    return found[256], found[257]


def _pnm(data: bytes):
    if data[:1] != b"P" or data[1:2] not in (b"1", b"2", b"3", b"4", b"5", b"6"):
        return None
    tokens = re.sub(rb"#[^\n]*", b" ", bytes(data[2:1024])).split()
    return int(tokens[0]), int(tokens[1])
