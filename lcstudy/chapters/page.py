"""A chapter's page: its findings, its tables and figures with captions, and its downloads.

A chapter module's ``build(...)`` returns a :class:`Page`; the notebook only shows its parts, in
the order its sections want them (``page.show("overall")``), so the notebook stays a parameters
cell and calls — no table or figure is built in it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .findings import Findings


@dataclass
class Part:
    form: str  # "table" | "figure" | "markdown"
    obj: object
    caption: str = ""


@dataclass
class Page:
    chapter: str
    header: str = ""
    findings: Findings = None  # type: ignore[assignment]
    parts: dict[str, list[Part]] = field(default_factory=dict)  # a section's parts, in order
    downloads: list[Path] = field(default_factory=list)
    data: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self):
        if self.findings is None:
            self.findings = Findings(self.chapter)

    def table(self, key: str, styler, caption: str = "") -> None:
        self.parts.setdefault(key, []).append(Part("table", styler, caption))

    def figure(self, key: str, fig, caption: str) -> None:
        """Keep ``fig`` as a PNG (rendered now, at :data:`style.RETINA` times the screen's resolution, shown
        at the size the style chose for the content column) and close it."""
        png = None
        if fig is not None:
            import io

            import matplotlib.pyplot as plt
            from IPython.display import Image

            from . import style

            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight", dpi=style.SCREEN_DPI * style.RETINA)
            plt.close(fig)
            # retina: shown at half its pixel size (RETINA is 2), so it is sharp on any screen
            png = Image(data=buf.getvalue(), format="png", retina=style.RETINA == 2)
        self.parts.setdefault(key, []).append(Part("figure", png, caption))

    def text(self, key: str, markdown: str) -> None:
        self.parts.setdefault(key, []).append(Part("markdown", markdown))

    def show_header(self) -> None:
        from IPython.display import Markdown, display

        md = self.header + ("\n\n" if self.header else "") + self.findings.markdown()
        if md.strip():
            display(Markdown(md))

    def show(self, *keys: str) -> None:
        from IPython.display import Markdown, display

        for key in keys:
            for p in self.parts.get(key, []):
                if p.obj is None:
                    continue
                if p.form == "markdown":
                    display(Markdown(p.obj))
                    continue
                if p.form == "table" and p.caption:
                    display(Markdown(p.caption))
                display(p.obj)
                if p.form == "figure" and p.caption:
                    display(Markdown(f"*{p.caption}*"))

    def nothing_yet(self, header: str, finding: str, downloads_dir) -> Page:
        """The page of a chapter with no data to read yet: what is missing and the command that makes it."""
        self.header = header
        self.findings.missing(finding)
        self.write(downloads_dir, {})
        return self

    def write(self, downloads_dir, tables: dict[str, pd.DataFrame]) -> list[Path]:
        """One xlsx per chapter (a sheet per table), a CSV per table, and the findings' facts."""
        from ..runs.store import atomic_write_csv, atomic_write_excel

        self.data.update(tables)
        if downloads_dir is None:
            return []
        out = Path(downloads_dir)
        keep = {k: v for k, v in tables.items() if v is not None and not v.empty}
        files = []
        if keep:
            path = out / f"lcstudy_{self.chapter}.xlsx"
            atomic_write_excel(path, keep)
            files.append(path)
        for k, v in keep.items():
            p = out / f"lcstudy_{self.chapter}_{k}.csv"
            atomic_write_csv(p, v)
            files.append(p)
        f = out / f"lcstudy_{self.chapter}_findings.csv"
        atomic_write_csv(f, self.findings.table())
        files.append(f)
        self.downloads = files
        return files
