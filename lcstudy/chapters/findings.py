"""Findings stated in words, every number traceable to a downloaded table.

A chapter opens with "What this shows": 3–6 sentences generated from its data. Each number in
a sentence is a :class:`Fact` — a cell of one of the chapter's download tables (file, the row's
key columns, the column) — formatted as the tables format it. The facts are written beside the
tables (``lcstudy_<chapter>_findings.csv``), and a test re-reads every stated number from the
CSV it names: a number that cannot be traced to a table is a defect, and cannot be typed by hand.
When the data are too thin for a finding, the sentence says what is missing and which command
produces it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from .columns import fmt


@dataclass(frozen=True)
class Fact:
    value: object
    text: str
    table: str  # the download table's name (file lcstudy_<chapter>_<table>.csv)
    where: dict  # key columns → values, identifying one row
    column: str


def _word(text) -> str:
    """A name in a finding (codec, platform, parameter): in emphasis when it holds digits, so that no
    one mistakes a number in a name ("Xeon Gold 5218R", "0.5 bpp") for a finding's number."""
    text = str(text)
    return f"*{text}*" if any(ch.isdigit() for ch in text) else text


def fact(tables: dict[str, pd.DataFrame], table: str, where: dict, column: str, kind: str = "sig3") -> Fact:
    """The cell ``column`` of the one row of ``tables[table]`` matching ``where``, formatted by ``kind``
    (see :func:`lcstudy.chapters.columns.fmt`)."""
    t = tables[table]
    m = pd.Series(True, index=t.index)
    for k, v in where.items():
        m &= t[k].astype(str) == str(v)
    rows = t[m]
    if len(rows) != 1:
        raise ValueError(f"finding: {len(rows)} rows of {table} match {where}")
    v = rows[column].iloc[0]
    v = v.item() if hasattr(v, "item") else v
    text = fmt(kind, v)
    if kind == "pct":
        text += " %"
    return Fact(v, text, table, {k: (v2.item() if hasattr(v2, "item") else v2) for k, v2 in where.items()}, column)


#: the columns of a chapter's findings CSV (``lcstudy_<chapter>_findings.csv``), in words: the Data page
#: describes that file with these, not with the chapter tables' columns of the same name
COLUMNS = {
    "finding": ("finding", "int", "the finding's number on its chapter's page"),
    "sentence": ("sentence", "text", "the finding as the page states it"),
    "number": ("number", "text", "one number of the sentence, as printed"),
    "value": ("value", "text", "that number's unrounded value: the cell of the table named in the next columns"),
    "table": ("table", "text", "the download (CSV) the number is read from"),
    "row": ("row", "text", "the key columns and values that pick the row (JSON)"),
    "column": ("column", "text", "the column of that row"),
}


@dataclass
class Findings:
    chapter: str
    items: list[tuple[str, dict[str, Fact]]] = field(default_factory=list)
    headline: int = 2  # how many of them the introduction gathers

    def add(self, template: str, **facts) -> None:
        """``template`` with ``{name}`` fields: a :class:`Fact` for every number, plain text for words."""
        self.items.append((template, facts))

    def missing(self, text: str) -> None:
        """A finding the data cannot support yet: what is missing, and the command that produces it."""
        self.items.append((text, {}))

    def sentences(self) -> list[str]:
        return [t.format(**{k: (f.text if isinstance(f, Fact) else _word(f)) for k, f in facts.items()})
                for t, facts in self.items]

    def markdown(self) -> str:
        if not self.items:
            return ""
        return "**What this shows**\n\n" + "\n".join(f"- {s}" for s in self.sentences()) + "\n"

    def table(self) -> pd.DataFrame:
        rows = []
        for i, ((template, facts), sentence) in enumerate(zip(self.items, self.sentences())):
            facts = {k: f for k, f in facts.items() if isinstance(f, Fact)}
            if not facts:
                rows.append({"finding": i + 1, "sentence": sentence, "number": "", "value": "", "table": "",
                             "row": "", "column": ""})
            for name, f in facts.items():
                v = f.value
                rows.append({"finding": i + 1, "sentence": sentence, "number": f.text,
                             "value": "" if isinstance(v, float) and math.isnan(v) else v,
                             "table": f"lcstudy_{self.chapter}_{f.table}.csv", "row": json.dumps(f.where),
                             "column": f.column})
        return pd.DataFrame(rows, columns=["finding", "sentence", "number", "value", "table", "row", "column"])


def drift_clause(row) -> str:
    """The end of a sentence comparing two medians from different runs: whether their ratio is within the
    uncertainty across runs (``{u}``: the fact of its
    ``ratio_uncertainty_pct``, :func:`lcstudy.core.drift.ratio_uncertainty`), i.e. whether a rerun could tell
    them apart."""
    if not row.ratio_uncertainty_pct > 0:  # results from before the reference workload: nothing to say
        return "."
    if bool(row.within_uncertainty):
        return (": within the uncertainty across runs (±{u}), so the machine's drift between the two runs could "
                "account for the difference.")
    return " (uncertainty across runs ±{u})."
