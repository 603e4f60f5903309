"""A small multilingual sample corpus for ``jina-vdb demo``, examples and benchmarks.

Generated, not shipped: texts in six languages and a code file, two document-like images
(a bar chart and a table, drawn with PIL) and a two-page PDF written by hand (a minimal
valid PDF with a real text layer). The output is deterministic: the same bytes every run,
so re-running the demo skips everything already stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TEXTS: dict[str, str] = {
    "en_paris.md": "# Paris\n\nParis is the capital and largest city of France. The Eiffel Tower, "
    "built in 1889, is its best-known landmark.",
    "de_berlin.txt": "Berlin ist die Hauptstadt Deutschlands. Das Brandenburger Tor steht im "
    "Zentrum der Stadt und ist ein Symbol der Wiedervereinigung.",
    "fr_train.txt": "Le train à grande vitesse relie Paris à Lyon en deux heures. Le prix d'un "
    "billet varie de 25 à 90 euros selon la date de réservation.",
    "es_paella.txt": "La paella es un plato tradicional de Valencia. Se prepara con arroz, "
    "azafrán, verduras y, a menudo, pollo o mariscos.",
    "zh_beijing.txt": "北京是中华人民共和国的首都，也是全国的政治和文化中心。故宫位于北京市中心。",
    "ja_fuji.txt": "富士山は日本で最も高い山で、標高は3776メートルです。"
    "夏には多くの登山者が訪れます。",
    "maxsim.py": "import numpy as np\n\n\n"
    "def maxsim(query: np.ndarray, doc: np.ndarray) -> float:\n"
    '    """Late interaction: each query token takes its best-matching document token."""\n'
    "    return float((query @ doc.T).max(axis=1).sum())\n",
}

REVENUE = {"Q1": 12.5, "Q2": 15.0, "Q3": 17.25, "Q4": 19.75}
PRICES = [("Item", "Qty", "Price"), ("Coffee", "2", "7.00"), ("Croissant", "3", "6.30"),
          ("Orange juice", "1", "4.50"), ("Total", "", "17.80")]  # fmt: skip
PDF_PAGES = [
    ["Annual report 2025", "", "Revenue grew every quarter, from 12.5 to 19.75 million euros.",
     "The largest market was Germany, followed by France and Spain."],
    ["Outlook", "", "We expect the new vector search product to double the number of customers.",
     "Hybrid retrieval combines dense vectors with late-interaction reranking."],
]  # fmt: skip


def write_sample_corpus(folder: str | Path) -> list[Path]:
    """Write the sample corpus under ``folder``; returns the files written (sorted)."""
    root = Path(folder)
    (root / "texts").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "pdf").mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in TEXTS.items():
        path = root / "texts" / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    written.append(
        _save(
            bar_chart("Quarterly revenue (million EUR)", REVENUE),
            root / "images" / "revenue_chart.png",
        )
    )
    written.append(
        _save(
            table_image("Receipt - Cafe de la Gare", PRICES), root / "images" / "receipt_table.png"
        )
    )
    pdf = root / "pdf" / "annual_report.pdf"
    pdf.write_bytes(minimal_pdf(PDF_PAGES))
    written.append(pdf)
    return sorted(written)


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path, format="PNG", optimize=False)
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


def bar_chart(
    title: str, values: dict[str, float], size: tuple[int, int] = (640, 420)
) -> Image.Image:
    """A simple labelled bar chart, like a slide or report figure."""
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), title, fill="black", font=_font(22))
    left, bottom, top = 60, h - 50, 70
    draw.line([(left, top), (left, bottom), (w - 20, bottom)], fill="black", width=2)
    peak = max(values.values()) or 1.0
    slot = (w - 40 - left) / len(values)
    colours = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    for i, (label, value) in enumerate(values.items()):
        x0 = left + 15 + i * slot
        y0 = bottom - (bottom - top - 20) * value / peak
        draw.rectangle([x0, y0, x0 + slot * 0.6, bottom - 1], fill=colours[i % len(colours)])
        draw.text((x0, bottom + 8), label, fill="black", font=_font(16))
        draw.text((x0, y0 - 22), f"{value:g}", fill="black", font=_font(16))
    return image


def table_image(
    title: str, rows: Sequence[tuple[str, ...]], size: tuple[int, int] = (560, 320)
) -> Image.Image:
    """A ruled table with a header row, like a scanned receipt or invoice."""
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), title, fill="black", font=_font(22))
    top, row_h = 60, (h - 80) // len(rows)
    widths = [0.5, 0.2, 0.3]
    for r, row in enumerate(rows):
        y = top + r * row_h
        if r == 0:
            draw.rectangle([20, y, w - 20, y + row_h], fill="#e8e8e8")
        x = 20.0
        for c, cell in enumerate(row):
            draw.text((x + 8, y + row_h // 4), cell, fill="black", font=_font(18))
            x += widths[c] * (w - 40)
            draw.line([(x, top), (x, top + len(rows) * row_h)], fill="gray")
        draw.line([(20, y), (w - 20, y)], fill="gray")
    draw.rectangle([20, top, w - 20, top + len(rows) * row_h], outline="black", width=2)
    return image


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")  # WinAnsiEncoding, the standard fonts' encoding
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def minimal_pdf(pages: list[list[str]], *, size: tuple[int, int] = (612, 792)) -> bytes:
    """A valid PDF (Letter pages, Helvetica text, one grey bar per page) with a text layer."""
    n = len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n))
        + b"] /Count %d >>" % n,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, lines in enumerate(pages):
        ops = [
            b"0.85 g 72 80 %d 24 re f 0 g" % (size[0] - 144),
            b"BT /F1 14 Tf 72 %d Td 20 TL" % (size[1] - 90),
        ]
        ops += [_pdf_string(line) + b" Tj T*" for line in lines]
        ops.append(b"ET")
        stream = b"\n".join(ops)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (size[0], size[1], 5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
