"""The CJK fonts notices are set in, cut down at setup so that a one-page notice stays small.

WeasyPrint embeds a subset of each font it uses, but it keeps glyph ids (HarfBuzz ``RETAIN_GIDS``): every
glyph slot up to the highest one used stays in the file, empty. Noto Serif CJK has 65,535 glyphs and the
common hanzi sit high, so a one-page notice carried ~60,000 empty slots per font (310–410 KB per PDF).

``build()`` (run by ``make setup``: ``python -m engine.notices.fonts``) makes, from the installed Noto
Serif/Sans CJK SC, fonts holding the characters notices can contain — GB 2312 (6,763 hanzi and its
symbols), ASCII, Latin-1, general and CJK punctuation, full-width forms — ordered so that the characters
the shipped templates, forms and region names use come first and GB 2312 level 1 (the common hanzi)
before level 2. Glyph ids are renumbered so that CID = GID in the result, as in the original fonts.
They are registered under their own family names (``Noto Serif CJK SC Notice`` …), which the renderer
puts before ``Noto Serif CJK SC`` in the notice stylesheets, so a character outside the set (a rare
character in a name) still renders, from the installed font (that notice is then larger).

The built files live in ``instance/fonts/`` (``XIANGFLOW_FONTS_DIR``), are not committed, and are rebuilt
when their source font or this recipe changes. Without them notices render with the installed fonts.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.core import settings

log = logging.getLogger(__name__)

FONTS_DIR_ENV = "XIANGFLOW_FONTS_DIR"
RECIPE_VERSION = 1  # bump when the character set or the build changes: built files are then remade
MANIFEST = "fonts.json"


@dataclass(frozen=True)
class NoticeFont:
    family: str  # the family the stylesheets name
    notice_family: str  # the built font's own family
    weight: str  # CSS font-weight of the face
    source: str  # fontconfig pattern of the installed font it is cut from
    filename: str


FONTS = (
    NoticeFont("Noto Serif CJK SC", "Noto Serif CJK SC Notice", "normal", "Noto Serif CJK SC:style=Regular",
               "notice-serif-sc-regular.otf"),
    NoticeFont("Noto Serif CJK SC", "Noto Serif CJK SC Notice", "bold", "Noto Serif CJK SC:style=Bold",
               "notice-serif-sc-bold.otf"),
    NoticeFont("Noto Sans CJK SC", "Noto Sans CJK SC Notice", "normal", "Noto Sans CJK SC:style=Regular",
               "notice-sans-sc-regular.otf"),
)


def fonts_dir() -> Path:
    """Where the built notice fonts are kept (``XIANGFLOW_FONTS_DIR``, default ``instance/fonts``)."""
    return Path(os.environ.get(FONTS_DIR_ENV) or settings.ROOT / "instance" / "fonts")


@lru_cache(maxsize=8)
def font_file(pattern: str) -> tuple[str, int] | None:
    """The installed font file (and face index in a collection) fontconfig picks for pattern, or None."""
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}:%{index}", pattern], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path, _, index = out.rpartition(":")
    return (path, int(index or 0)) if path and Path(path).is_file() else None


def _gb2312() -> list[str]:
    chars = []
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.append(bytes([high, low]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars  # symbols, then level 1 (3,755 common hanzi), then level 2 (3,008)


def _used_by_the_shipped_procedures() -> list[str]:
    """CJK characters of the shipped templates, forms, diagrams and region names, most frequent first."""
    counts: collections.Counter[str] = collections.Counter()
    for folder in (settings.WORKFLOWS_DIR, settings.FORMS_DIR, settings.REGIONS_CSV.parent):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and path.suffix in (".html", ".json", ".bpmn", ".dmn", ".csv"):
                counts.update(ch for ch in path.read_text(encoding="utf-8", errors="ignore") if ord(ch) >= 0x2E80)
    return [ch for ch, _n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def charset() -> list[str]:
    """The characters the notice fonts hold, in glyph order."""
    ascii_ = [chr(c) for c in range(0x20, 0x7F)]
    rest = [chr(c) for block in ((0xA0, 0x100), (0x2000, 0x2070), (0x2100, 0x2200), (0x2460, 0x2500),
                                 (0x3000, 0x3040), (0xFF00, 0xFFF0)) for c in range(*block)]
    return list(dict.fromkeys([*ascii_, *_used_by_the_shipped_procedures(), *_gb2312(), *rest]))


def _cut(source: tuple[str, int], chars: list[str], font: NoticeFont) -> bytes:
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.reorderGlyphs import reorderGlyphs

    ttfont = TTFont(source[0], fontNumber=source[1], lazy=True)
    options = subset.Options()
    options.layout_features = ["kern"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.drop_tables += ["vhea", "vmtx", "VORG", "BASE"]  # notices are set horizontally
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in chars])
    subsetter.subset(ttfont)

    # glyph order: the characters in the order given (the most used first), then what layout needs
    cmap = ttfont.getBestCmap()
    old_order = ttfont.getGlyphOrder()
    new_order = list(dict.fromkeys([".notdef", *(cmap[ord(c)] for c in chars if ord(c) in cmap), *old_order]))
    top = ttfont["CFF "].cff.topDictIndex[0]
    fd_select = list(top.FDSelect.gidArray) if hasattr(top, "FDSelect") else None
    reorderGlyphs(ttfont, new_order)
    if fd_select is not None:  # reorderGlyphs leaves FDSelect (one entry per glyph id) as it was
        position = {name: i for i, name in enumerate(old_order)}
        top.FDSelect.gidArray = [fd_select[position[name]] for name in new_order]
    buffer = io.BytesIO()
    ttfont.save(buffer)
    ttfont.close()  # the source font file (lazy=True keeps it open): closed, or a ResourceWarning follows

    # renumber: CID = GID, as in the installed fonts (PDF readers map CIDs through the CFF charset)
    buffer.seek(0)
    ttfont = TTFont(buffer)
    top = ttfont["CFF "].cff.topDictIndex[0]
    old_names = list(top.charset)
    new_names = [".notdef", *(f"cid{i:05d}" for i in range(1, len(old_names)))]
    ttfont.setGlyphOrder(new_names)
    for tag in ttfont.keys():
        if tag not in ("CFF ", "GlyphOrder"):
            ttfont[tag]  # decompile under the new names
    charstrings = top.CharStrings
    charstrings.charStrings = {new: charstrings.charStrings[old] for old, new in zip(old_names, new_names, strict=True)}
    top.charset = new_names
    top.CIDCount = len(new_names)
    compact_old, compact_new = font.family.replace(" ", ""), font.notice_family.replace(" ", "")
    for record in ttfont["name"].names:
        if record.nameID in (1, 3, 4, 6, 16):
            text = str(record.toUnicode())
            record.string = text.replace(font.family, font.notice_family).replace(
                compact_old.replace("SC", "sc"), compact_new.replace("SC", "sc"))
    out = io.BytesIO()
    ttfont.save(out)
    return out.getvalue()


def _source_stamp(source: tuple[str, int]) -> dict:
    stat = Path(source[0]).stat()
    return {"file": source[0], "index": source[1], "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "recipe": RECIPE_VERSION}


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build(folder: Path | None = None, force: bool = False) -> list[Path]:
    """Make the notice fonts that are missing or stale in folder; return the files made."""
    folder = folder or fonts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(folder)
    made = []
    chars: list[str] | None = None
    for font in FONTS:
        source = font_file(font.source)
        expected = font.family.replace(" SC", "").replace(" ", "").lower()  # notoserifcjk, not a substitute
        if source is None or expected not in Path(source[0]).stem.lower():
            log.warning("notice fonts: %s is not installed (Debian fonts-noto-cjk); skipped", font.source)
            continue
        stamp = _source_stamp(source)
        target = folder / font.filename
        if not force and target.is_file() and manifest.get(font.filename) == stamp:
            continue
        chars = chars or charset()
        partial = target.with_suffix(".tmp")
        partial.write_bytes(_cut(source, chars, font))
        partial.replace(target)
        manifest[font.filename] = stamp
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        made.append(target)
    return made


def installed(folder: Path | None = None) -> list[tuple[NoticeFont, Path]]:
    """The built notice fonts present and matching their recipe, with their files."""
    folder = folder or fonts_dir()
    manifest = _manifest(folder)
    found = []
    for font in FONTS:
        path = folder / font.filename
        stamp = manifest.get(font.filename)
        if path.is_file() and stamp and stamp.get("recipe") == RECIPE_VERSION:
            found.append((font, path))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the notice fonts (CJK, cut down to what notices hold).")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--dir", type=Path, default=None, help=f"output folder (default {fonts_dir()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    made = build(args.dir, args.force)
    for font, path in installed(args.dir):
        print(f"{path} ({font.notice_family}, {font.weight}): {path.stat().st_size // 1024} KB")
    print(f"{len(made)} built, {len(installed(args.dir))} of {len(FONTS)} present")


if __name__ == "__main__":
    main()
