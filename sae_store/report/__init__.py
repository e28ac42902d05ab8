"""Figures and documents from results: report.html (interactive, offline), report.md, summary.json.

Nothing here computes results: :func:`load_inputs` reads what earlier steps wrote, section builders
turn loaded results into figures, and :func:`build_report` writes the documents.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.report.assemble import report_sections
    from sae_store.report.bidi import dir_attr, inline_html
    from sae_store.report.build import ReportResult, build_report, check_writable
    from sae_store.report.evaluation_sections import evaluation_figure
    from sae_store.report.inputs import ReportInputs, load_inputs
    from sae_store.report.plotting import COLOURS, language_colour
    from sae_store.report.section import Figure, Notice, Section, Table, Text, not_run_section

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "assemble": ("report_sections",),
        "bidi": ("dir_attr", "inline_html"),
        "build": ("ReportResult", "build_report", "check_writable"),
        "evaluation_sections": ("evaluation_figure",),
        "inputs": ("ReportInputs", "load_inputs"),
        "plotting": ("COLOURS", "language_colour"),
        "section": ("Figure", "Notice", "Section", "Table", "Text", "not_run_section"),
    },
)
