"""Reports: self-contained HTML with inline images, JSON with the same numbers, gallery PNGs."""

from invguard.report.images import data_uri, gallery_grid, png_bytes, to_pil
from invguard.report.inversion import (
    GALLERY_PNG,
    REPORT_HTML,
    REPORT_JSON,
    InversionReport,
)
from invguard.report.io import write_atomic

__all__ = [
    "GALLERY_PNG",
    "REPORT_HTML",
    "REPORT_JSON",
    "InversionReport",
    "data_uri",
    "gallery_grid",
    "png_bytes",
    "to_pil",
    "write_atomic",
]
