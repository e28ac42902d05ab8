"""report.md: the static document (PNG figures rendered with matplotlib) for papers and email."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sae_store.progress import progress_bar
from sae_store.report.plotting import save_png
from sae_store.report.section import Figure, Notice, Section, Table, Text, markdown_table

FIGURES_DIR = "figures"


def write_markdown(sections: Sequence[Section], out_dir: Path, *, title: str, intro: str) -> list[Path]:
    """Write ``out_dir/report.md`` and its PNGs under ``out_dir/figures``; returns the PNG paths."""
    fig_dir = out_dir / FIGURES_DIR
    fig_dir.mkdir(exist_ok=True)
    statics = [f for s in sections for f in s.figures if f.static is not None]
    pngs: dict[str, Path] = {}
    for fig in progress_bar(statics, desc="PNG figures", unit="fig", leave=False):
        pngs[fig.name] = save_png(fig.static, fig_dir / f"{fig.name}.png")
    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for item in section.items:
            if isinstance(item, Text):
                lines += [item.markdown, ""]
            elif isinstance(item, Notice):
                lines += ["> " + line for line in item.markdown.splitlines()] + [""]
            elif isinstance(item, Table):
                if item.caption:
                    lines += [f"*{item.caption}*", ""]
                lines += [markdown_table(item.frame, max_rows=item.max_rows, more="report.html"), ""]
            elif isinstance(item, Figure) and item.name in pngs:
                lines += [f"![{item.name}]({FIGURES_DIR}/{item.name}.png)", "", f"*{item.caption}*", ""]
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return list(pngs.values())
