"""The pictures on a notice: the office's round red seal (PNG) and the QR code to its verification page (SVG)."""

from __future__ import annotations

import base64
import io
from functools import lru_cache

from engine.notices.fonts import font_file


@lru_cache(maxsize=256)
def seal_png(office_name: str, demo: bool) -> bytes:
    """A round red seal with the office's name around a star (演示 on demo certificates), as PNG."""
    import math

    from PIL import Image, ImageDraw, ImageFont

    size, red = 600, (212, 0, 0, 215)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    centre = size / 2
    draw.ellipse((14, 14, size - 14, size - 14), outline=red, width=16)
    star = []
    for i in range(10):
        radius = 96 if i % 2 == 0 else 38
        angle = math.radians(-90 + 36 * i)
        star.append((centre + radius * math.cos(angle), centre + radius * math.sin(angle)))
    draw.polygon(star, fill=red)

    located = font_file("Noto Serif CJK SC:style=Bold") or font_file("Noto Sans CJK SC:style=Bold")

    def font(px: int):
        if located is None:
            return ImageFont.load_default(px)
        return ImageFont.truetype(located[0], px, index=located[1])

    chars = list(office_name)
    n = len(chars)
    span = min(250.0, 30.0 * n)
    glyph_px = int(max(40, min(74, 2 * math.pi * 205 * (span / 360) / max(n, 1) * 0.92)))
    glyph_font = font(glyph_px)
    for i, char in enumerate(chars):
        theta = -90 - span / 2 + span * (i + 0.5) / n
        tile = Image.new("RGBA", (glyph_px * 2, glyph_px * 2), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((glyph_px, glyph_px), char, font=glyph_font, fill=red, anchor="mm")
        tile = tile.rotate(-(theta + 90), resample=Image.Resampling.BICUBIC)
        x = centre + 205 * math.cos(math.radians(theta)) - glyph_px
        y = centre + 205 * math.sin(math.radians(theta)) - glyph_px
        image.alpha_composite(tile, (int(round(x)), int(round(y))))
    if demo:
        draw.text((centre, centre + 150), "演示专用", font=font(52), fill=red, anchor="mm")
    # one colour, the shape in the alpha channel only: the colour planes then compress to almost nothing
    # in the PDF (WeasyPrint stores them apart from the alpha mask)
    alpha = image.getchannel("A")
    solid = Image.new("RGB", image.size, red[:3])
    image = Image.merge("RGBA", (*solid.split(), alpha))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def qr_svg(text: str) -> str:
    """A QR code as compact SVG (one path, horizontal runs)."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=1)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    parts = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                parts.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    n = len(matrix)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" width="{n}mm" height="{n}mm" '
            f'shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>'
            f'<path d="{"".join(parts)}" fill="#000"/></svg>')


def data_uri(mime: str, data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"
