"""Draw placeholder PNGs for the images an issue source names.

The sample bulletin (examples/2023-02) was rebuilt from text extracted from a PDF, so its
photos are lost. This script reads ``issue.md``, finds every image it names (the ``cover``
front-matter key and each ``![alt](path "caption")``) and draws a plain placeholder for it:
a grey-to-blue gradient with a short ASCII label (no CJK font needed).

Photos are 1200x675 (16:9); the cover is 900x383 (the WeChat cover ratio, 2.35:1).
Every file is palette-quantised and optimised so that it stays well under 150 KB.
The output is deterministic: running the script again rewrites the same bytes.

Usage (from the repository root):

    .venv/bin/python scripts/make_placeholder_images.py [ISSUE_DIR] [--skip-existing]

ISSUE_DIR defaults to examples/2023-02. With --skip-existing, files that already exist
(e.g. real photos dropped in later) are left alone.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ISSUE_DIR = REPO / "examples" / "2023-02"

PHOTO_SIZE = (1200, 675)
COVER_SIZE = (900, 383)
MAX_BYTES = 150 * 1024
COLOURS = 32

GREY = (138, 143, 152)
BLUE = (40, 84, 138)
INK = (255, 255, 255)

IMAGE_RE = re.compile(r'!\[[^\]]*\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)')
COVER_RE = re.compile(r"^cover:\s*(\S+)\s*$", re.MULTILINE)


def referenced_images(issue_md: Path) -> tuple[str | None, list[str]]:
    """Return (cover path, photo paths in order of first appearance) named by issue.md."""
    text = issue_md.read_text(encoding="utf-8")
    cover = None
    if text.startswith("---"):
        front = text.split("---", 2)[1]
        m = COVER_RE.search(front)
        cover = m.group(1) if m else None
    photos: list[str] = []
    for m in IMAGE_RE.finditer(text):
        path = m.group(1)
        if path not in photos and path != cover:
            photos.append(path)
    return cover, photos


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support
        return ImageFont.load_default()


def gradient(size: tuple[int, int]) -> Image.Image:
    """Diagonal grey-to-blue gradient (top left grey, bottom right blue)."""
    ramp = Image.linear_gradient("L")  # 256x256, 0 at the top, 255 at the bottom
    vertical = ramp.resize(size)
    horizontal = ramp.rotate(90).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize(size)
    mask = Image.blend(horizontal, vertical, 0.5)
    return Image.composite(Image.new("RGB", size, BLUE), Image.new("RGB", size, GREY), mask)


def draw_placeholder(size: tuple[int, int], lines: list[str]) -> Image.Image:
    img = gradient(size)
    d = ImageDraw.Draw(img)
    w, h = size
    margin = max(12, h // 30)
    d.rectangle([margin, margin, w - 1 - margin, h - 1 - margin], outline=INK, width=3)
    sizes = [h // 9] + [h // 18] * (len(lines) - 1)
    fonts = [font(s) for s in sizes]
    gap = h // 30
    heights = [d.textbbox((0, 0), ln, font=f)[3] for ln, f in zip(lines, fonts, strict=True)]
    y = (h - sum(heights) - gap * (len(lines) - 1)) // 2
    for ln, f, lh in zip(lines, fonts, heights, strict=True):
        lw = d.textlength(ln, font=f)
        d.text(((w - lw) / 2, y), ln, font=f, fill=INK)
        y += lh + gap
    return img.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def save(img: Image.Image, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)
    return path.stat().st_size


def resolve(issue_dir: Path, rel: str) -> Path:
    path = (issue_dir / rel).resolve()
    if issue_dir.resolve() not in path.parents:
        raise SystemExit(f"{rel}: image path leaves the issue folder")
    if path.suffix.lower() != ".png":
        raise SystemExit(f"{rel}: this script only draws .png placeholders")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("issue_dir", nargs="?", type=Path, default=DEFAULT_ISSUE_DIR)
    ap.add_argument("--skip-existing", action="store_true", help="keep files that exist")
    args = ap.parse_args(argv)

    issue_dir: Path = args.issue_dir
    cover, photos = referenced_images(issue_dir / "issue.md")
    slug = issue_dir.resolve().name

    jobs: list[tuple[str, tuple[int, int], list[str]]] = []
    if cover:
        jobs.append((cover, COVER_SIZE, [f"{slug} cover", "placeholder", "900 x 383"]))
    for n, rel in enumerate(photos, 1):
        stem = Path(rel).stem
        jobs.append((rel, PHOTO_SIZE, [f"photo {n} - placeholder", stem, f"issue {slug}"]))

    status = 0
    for rel, size, lines in jobs:
        path = resolve(issue_dir, rel)
        if args.skip_existing and path.exists():
            print(f"kept     {rel}")
            continue
        n_bytes = save(draw_placeholder(size, lines), path)
        flag = "" if n_bytes <= MAX_BYTES else "  TOO LARGE"
        status = status or (1 if flag else 0)
        print(f"wrote    {rel}  {size[0]}x{size[1]}  {n_bytes} bytes{flag}")
    return status


if __name__ == "__main__":
    sys.exit(main())
