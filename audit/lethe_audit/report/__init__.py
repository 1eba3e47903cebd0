"""Auditor reports: verify a bundle offline, then show what it proves (HTML, PDF, JSON).

>>> report = build_report("bundle.zip", [vkey])            # doctest: +SKIP
>>> report.headline                                       # doctest: +SKIP
'Verification passed: all 7 log entries, ...'
>>> write_report("bundle.zip", [vkey], "report.html")     # doctest: +SKIP

Verification always runs first; a bundle that fails still yields a report whose first line
says so and names the entry or checkpoint at fault (``Report.error`` holds the error). The
report model (:meth:`Report.to_dict`, format ``lethe.report.v1``) is what the HTML and PDF are
rendered from, so the JSON carries every number they show. :func:`build_receipt_page` renders
one deletion receipt for its data subject in plain language. Torch-free.
"""

from __future__ import annotations

from lethe_audit.report._build import (
    FORMATS,
    Report,
    build_report,
    format_for,
    report_dict,
    write_report,
)
from lethe_audit.report._model import REPORT_FORMAT
from lethe_audit.report._receipt import (
    RECEIPT_PAGE_FORMAT,
    ReceiptPage,
    build_receipt_page,
    write_receipt_page,
)

__all__ = [
    "FORMATS",
    "RECEIPT_PAGE_FORMAT",
    "REPORT_FORMAT",
    "ReceiptPage",
    "Report",
    "build_receipt_page",
    "build_report",
    "format_for",
    "report_dict",
    "write_receipt_page",
    "write_report",
]
