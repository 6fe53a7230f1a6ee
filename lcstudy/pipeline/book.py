"""Laying out the book from the results: the chapters (executed notebooks), the run pages (each run's
own notebook, copied from its results folder), the table of contents, the introduction's machines
table and headline findings, and the downloads page — all derived from
:data:`lcstudy.chapters.CHAPTERS` and the results folder, so the book lists only runs whose results
it reads."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent.parent
#: peak matmul more than this far from its platform's median marks a node as slow or shared
NODE_PEAK_TOLERANCE = 0.05


def book_dir() -> Path:
    return Path(os.environ.get("LCSTUDY_BOOK") or ROOT / "book").resolve()


def chapter_jobs() -> int:
    """How many chapter notebooks run at once: ``LCSTUDY_CHAPTER_JOBS``, else one per usable CPU, at most 4.

    Why concurrently: a chapter is a single-threaded Python process (pandas, matplotlib) that spends ~15 s
    on the 2-core VM, a third of it starting its kernel and importing; the chapters read the results
    and each writes only its own notebook and downloads (atomically), so none waits for another. Why at
    most 4: each kernel holds ~0.5 GB, and the eight chapters on more workers gain little. Not a timing
    job: the chapters measure nothing."""
    env = os.environ.get("LCSTUDY_CHAPTER_JOBS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            from ..errors import InputError

            raise InputError(f"CHAPTER_JOBS={env!r}: give a whole number of at least 1 (1 builds the chapters one "
                             "after another)")
        return n
    return max(1, min(4, len(os.sched_getaffinity(0))))


def execute_chapters(results_dir, reference, only=None, jobs: int | None = None) -> int:
    """Execute the chapter notebooks, ``jobs`` at a time (:func:`chapter_jobs`). A failed chapter is
    reported and the others go on; the exit status is 1 if any failed. Ctrl-C interrupts every chapter's
    kernel (:func:`lcstudy.pipeline.notebooks.stop_signals_reach_kernels`)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from ..chapters import CHAPTERS
    from . import notebooks

    book = book_dir()
    downloads = book / "_generated" / "downloads"
    todo = [c for c in CHAPTERS if not only or c.name in only]
    jobs = min(jobs or chapter_jobs(), max(len(todo), 1))
    params = {"results_dir": str(Path(results_dir).resolve()), "reference": str(Path(reference).resolve()),
              "downloads_dir": str(downloads)}
    t0 = time.monotonic()
    print(f"chapters: {len(todo)}, {jobs} at a time", flush=True)
    said = threading.Lock()  # one line at a time from the worker threads

    def one(i, c):
        with said:
            print(f"[chapter {i}/{len(todo)}] {c.name} ({time.monotonic() - t0:.0f} s into the chapters)", flush=True)
        notebooks.execute(c.name, book / f"{c.name}.ipynb", params, echo=False)
        return c

    failed = []
    with notebooks.stop_signals_reach_kernels():
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chapter")
        try:
            futures = {pool.submit(one, i, c): c for i, c in enumerate(todo, 1)}
            for f in as_completed(futures):
                c = futures[f]
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001
                    failed.append(c.name)
                    with said:
                        print(f"error: the {c.name} chapter failed: {notebooks.failure_text(e)}", file=sys.stderr)
                    continue
                with said:
                    print(f"wrote {book / (c.name + '.ipynb')} ({time.monotonic() - t0:.0f} s)", flush=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        print(f"error: {len(failed)} chapter(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def machines_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(platforms, nodes): one row per platform and device with its software, nodes, best and median peak
    matmul, runs and contended share; one row per node with its median peak and whether it is more than
    5 % off its platform's median (a slow or shared node)."""
    if runs.empty:
        return pd.DataFrame(), pd.DataFrame()
    r = runs.copy()
    r["node"] = r.nodes.str.split(", ").str[0]
    plat_med = r.groupby(["platform", "device"]).peak_matmul_gflops.median().rename("platform_peak")
    nodes = r.groupby(["platform", "device", "node"], as_index=False).agg(
        node_peak=("peak_matmul_gflops", "median"), runs=("run_id", "nunique"))
    nodes = nodes.merge(plat_med.reset_index(), on=["platform", "device"])
    nodes["off_pct"] = 100 * (nodes.node_peak / nodes.platform_peak - 1)
    nodes["flagged"] = nodes.off_pct.abs() > 100 * NODE_PEAK_TOLERANCE
    rows = []
    for (plat, dev), g in r.groupby(["platform", "device"], sort=True):
        first = g.iloc[0]
        n = nodes[(nodes.platform == plat) & (nodes.device == dev)]
        rows.append({"platform": plat, "device": dev, "CPU": first.cpu_model, "GPU": first.gpu_name or "—",
                     "nodes": ", ".join(n.node) + (f" (slow or shared: {', '.join(n[n.flagged].node)})"
                                                   if n.flagged.any() else ""),
                     "torch / CompressAI / Python": f"{first.torch_version} / {first.compressai_version} / "
                                                    f"{first.python_version}",
                     "peak matmul (GFLOP/s, median)": f"{g.peak_matmul_gflops.median():.3g}",
                     "runs": len(g), **reference_cells(g),
                     "contended repeats (%)": f"{100 * g.contended.sum() / max(g.repeats.sum(), 1):.1f}",
                     "measured (UTC)": _days(g.started_utc.min(), g.finished_utc.max())})
    return pd.DataFrame(rows), nodes


def reference_cells(g: pd.DataFrame) -> dict:
    """A platform's reference workload in the machines table: its median, the between-moment spread that
    widens its intervals, and the runs whose reference is flagged (:func:`lcstudy.core.drift.flag`), named
    like slow nodes."""
    if "ref_seconds" not in g or g.ref_seconds.isna().all():
        return {"reference (ms)": "—", "reference runs off": "—"}
    flagged = g[g.ref_flag.astype(bool)]
    return {"reference (ms)": f"{1e3 * g.ref_seconds.median():.3g} (sd {100 * g.drift_sd.iloc[0]:.1f} %)",
            "reference runs off": (f"{len(flagged)}: " + ", ".join(flagged.label.astype(str)[:6])
                                   + (" …" if len(flagged) > 6 else "")) if len(flagged) else "none"}


#: the machines table, split in two narrow ones (the content column holds about six short columns)
MACHINE_TABLES = (("platform", "device", "runs", "peak matmul (GFLOP/s, median)", "contended repeats (%)",
                   "measured (UTC)"),
                  ("platform", "device", "reference (ms)", "reference runs off"),
                  ("platform", "device", "CPU", "GPU", "torch / CompressAI / Python", "nodes"))


def run_title(r) -> str:
    """A run page's title, which the sidebar and the Runs index show: what ran (codec and quality, or the
    standard codecs; the backend where the run has one; what else differs, from its label), where
    (device and platform)."""
    if r.run_kind == "learned":
        what = f"{r.codec} q{r.quality}"
        rest = str(r.label).replace(f"{r.codec}-q{r.quality}", "", 1).strip("-_ ")
    else:
        what, rest = "Standard codecs", str(r.label).replace("standard-codecs", "", 1).strip("-_ ")
    backend = getattr(r, "backend", None)
    if isinstance(backend, str) and backend and backend != "eager":
        what += f" · {backend}"
        # the label ends with the backend too ("FP-q1-channels_last"): say it once
        rest = "-".join(p for p in rest.split("-") if p != backend).strip("-_ ")
    return f"{what}{f' ({rest})' if rest else ''} on {r.device} · {r.platform}"


def copy_titled(src: Path, dest: Path, title: str) -> None:
    """Copy a run's executed notebook into the book with its first heading (the notebook's generic
    title) replaced by the run's own, so that no two run pages share a title."""
    import json

    nb = json.loads(src.read_text())
    for cell in nb.get("cells", []):
        text = "".join(cell.get("source", []))
        if cell.get("cell_type") == "markdown" and text.lstrip().startswith("# "):
            head, _, body = text.lstrip().partition("\n")
            cell["source"] = f"# {title}" + (f"\n{body}" if body else "")
            break
    from ..runs.store import atomic_write_text

    atomic_write_text(dest, json.dumps(nb, indent=1, ensure_ascii=False))


def _md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _slug(s: str) -> str:
    from ..runs.layout import safe_name

    return safe_name(s.replace(" ", "-").replace(",", ""))


def write_book(results_dir) -> None:
    """The generated pages: table of contents, runs index and run pages, downloads page, machines and
    headline findings for the introduction."""
    from ..chapters import CHAPTERS
    from ..chapters.columns import COLUMNS
    from ..core.drift import DRIFT_BOUND, FLAG_P, PLATFORM_TOLERANCE
    from ..runs import layout
    from ..runs.store import atomic_write_text
    from ..runs.tidy import load_results
    from .cost import fmt_seconds

    book = book_dir()
    gen = book / "_generated"
    runs_dir = book / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs = load_results(results_dir, "runs") if Path(results_dir).exists() else pd.DataFrame()
    index = ["# Runs", "", "Every run whose results this book reads, by platform and device: its notebook shows "
             "where its time goes, its MACs, memory and heaviest operators.", ""]
    toc_runs = []
    if not runs.empty:
        runs = runs[runs.notebook.astype(bool)]
        planned = layout.planned_ids(results_dir)
        other = runs[~runs.request_id.isin(planned)] if planned is not None else runs.iloc[:0]
        for (plat, dev), g in runs.drop(other.index).groupby(["platform", "device"], sort=True):
            index += [f"## {plat} · {dev}", ""] + _runs_table(g, book, runs_dir / _slug(plat) / dev, toc_runs)
        if not other.empty:
            index += ["## Other runs", "", "Runs in the results folder that the profile did not plan (`make run` "
                      "trials with other parameters): each has its page, and none is in the chapters' comparisons.",
                      ""] + _runs_table(other, book, runs_dir / "other", toc_runs)
        index += incomplete_runs(results_dir)
    else:
        index.append("No runs yet: `make runs`.")
    lines = ["# generated by `python -m lcstudy.pipeline book`", "format: jb-book", "root: intro", "parts:",
             "- caption: The study", "  chapters:", "  - file: methodology"]
    lines += [f"  - file: {c.name}" for c in CHAPTERS if (book / f"{c.name}.ipynb").exists()]
    lines += ["- caption: Runs", "  chapters:", "  - file: runs_index"]
    if toc_runs:
        lines.append("    sections:")
        lines += [f"    - file: {p}" for p in toc_runs]
    lines += ["- caption: Data", "  chapters:", "  - file: data"]
    atomic_write_text(book / "_toc.yml", "\n".join(lines) + "\n")
    atomic_write_text(book / "runs_index.md", "\n".join(index) + "\n")
    atomic_write_text(book / "data.md", downloads_page(gen / "downloads", COLUMNS, CHAPTERS))
    m, nodes = machines_table(runs) if not runs.empty else (pd.DataFrame(), pd.DataFrame())
    text = "No results yet: `make runs`.\n"
    if not m.empty:
        total = runs.wall_seconds.sum()
        work = runs.codec_seconds.sum()
        text = ("\n\n".join(_md_table(m[list(cols)]) for cols in MACHINE_TABLES) + f"\n\nThe {len(runs)} runs took **{fmt_seconds(total)}** of measurement wall time "
                f"(`make cost` prints each); **{work / total:.0%}** of it was timed encoding and decoding (the rest: "
                "model loading, warm-up, quality metrics, the operator profile and the MAC count). A node whose "
                "median peak matmul rate is more than 5 % off its platform's median is named as slow or shared; a run "
                f"whose reference workload drifted more within it (at least {DRIFT_BOUND:.2f}×), or sits further off "
                f"its platform's median reference (at least {PLATFORM_TOLERANCE:.0%}), than the platform's usual "
                f"noise gives in {FLAG_P:.0%} of runs is named under *reference runs off* (sd: the spread of the "
                "platform's reference between moments, which widens its intervals across runs unless a "
                "reproducibility check has measured it on the codecs).\n")
    atomic_write_text(gen / "machines.md", text)
    from .reproducibility import markdown

    atomic_write_text(gen / "reproducibility.md", markdown(results_dir))  # the methodology shows the last check
    atomic_write_text(gen / "headlines.md", headlines(gen / "downloads", CHAPTERS))
    print(f"wrote {book}/_toc.yml ({len(toc_runs)} run pages), runs_index.md, data.md, _generated/machines.md, "
          "_generated/headlines.md, _generated/reproducibility.md")
    out = Path(os.environ.get("LCSTUDY_BOOK_OUT") or book / "_build")
    gone = prune_stale_run_pages(book, out / "html")
    if gone:
        print(f"removed {len(gone)} HTML page(s) of runs no longer in the results from {out / 'html'}")


def _runs_table(g: pd.DataFrame, book: Path, dest_dir: Path, toc_runs: list) -> list[str]:
    """The runs index's table of the runs ``g``, their notebooks copied under ``dest_dir`` as run pages."""
    from ..chapters.style import sort_codecs
    from .cost import fmt_seconds

    rows = []
    for r in sort_codecs(g, then=["label"]).itertuples():
        dest = dest_dir / f"{r.label}-{r.run_id[:6]}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_titled(Path(r.notebook), dest, run_title(r))
        rel = dest.relative_to(book).with_suffix("").as_posix()
        toc_runs.append(rel)
        backend = getattr(r, "backend", None)
        rows.append({"run": f"{{doc}}`{r.label} <{rel}>`", "platform": r.platform,
                     "backend": backend if isinstance(backend, str) and backend else
                     ("eager" if r.run_kind == "learned" else ""),
                     "quality": r.quality if r.run_kind == "learned" else "", "images": r.items, "repeats": r.repeats,
                     "weights": r.weights_label or r.weights, "wall time": fmt_seconds(r.wall_seconds)})
    t = pd.DataFrame(rows)
    # what one value fills is said once: the platform is the section's heading (a mixed section, "Other runs",
    # keeps the column), the weights go above the table. Why: repeated in every row (with a codec column the
    # run's name already starts with) they ran the table past the page
    out = []
    if t.platform.nunique() == 1 and dest_dir.name != "other":
        t = t.drop(columns="platform")
    if t.weights.astype(str).nunique() == 1:
        out += [f"Weights: {t.weights.iloc[0]}.", ""]
        t = t.drop(columns="weights")
    out.append(_md_table(t))
    return out + [""]


def incomplete_runs(results_dir) -> list[str]:
    """The runs index's section on runs that ended *incomplete: contended*: which items are missing (blank in
    every table and chapter) and how to measure them."""
    from ..runs import layout

    bad = [r for r in layout.runs(results_dir, warn=False) if r.meta.get("contended_items") and r.notebook.exists()]
    if not bad:
        return []
    out = ["## Incomplete runs", "", "These runs had items whose every repeat was contended by other processes "
           "(after retries): those items were not measured and are missing from every table and chapter. Run "
           "`make runs` again on a quiet machine to measure only them.", ""]
    out += [f"- **{r.meta.get('label')}** ({r.device}): {', '.join(r.meta['contended_items'])}" for r in bad]
    return out + [""]


def prune_stale_run_pages(book: Path, html: Path) -> list[Path]:
    """Delete the built HTML of run pages whose source is gone (a run removed or relabelled). Sphinx
    drops a removed page from the table of contents and the search index but leaves its HTML file,
    which would be published beside the current pages."""
    root = html / "runs"
    if not root.is_dir():
        return []
    gone = [p for p in root.rglob("*.html") if not (book / p.relative_to(html)).with_suffix(".ipynb").exists()]
    for p in gone:
        p.unlink()
    return gone


def headlines(downloads: Path, chapters) -> str:
    """The introduction's findings: the first sentences of each chapter's findings (from its findings CSV)."""
    out = []
    for c in chapters:
        f = downloads / f"lcstudy_{c.name}_findings.csv"
        if not f.exists():
            continue
        t = pd.read_csv(f, keep_default_na=False)
        sentences = list(dict.fromkeys(t.sentence))[:2]
        for s in sentences:
            out.append(f"- {s} ({{doc}}`{c.title} <{c.name}>`)")
    return ("\n".join(out) + "\n") if out else "No findings yet: `make book`.\n"


def downloads_page(downloads: Path, columns: dict, chapters) -> str:
    lines = ["# Data", "", "The raw data behind every table and figure, all derived from the tidy tables "
             "(`lcstudy.load_results`). Each CSV is listed with its columns; the xlsx workbooks hold the same "
             "tables, one sheet each. Raw per-repeat samples of every run are in `lcstudy_samples.csv` and, per "
             "run, under `results/`.", ""]
    files = sorted(downloads.glob("*")) if downloads.exists() else []
    if not files:
        return "\n".join(lines + ["(none yet: run `make book`)"]) + "\n"
    described = {"All_enc_report_CPU.xlsx": "encode stage times per image in the ICASSP 2023 paper's layout, our "
                 "columns after the paper's", "All_dec_report_CPU.xlsx": "decode stage times, the same layout",
                 "All_enc_report_Cuda.xlsx": "encode stage times on CUDA, the paper's layout",
                 "All_dec_report_Cuda.xlsx": "decode stage times on CUDA, the paper's layout"}
    tidy = {"lcstudy_timings.csv": "the tidy table: one row per run × image × direction × stage",
            "lcstudy_samples.csv": "every timed repeat of every stage", "lcstudy_memory.csv": "memory around every "
            "timed call", "lcstudy_kernels.csv": "the operator profile of each run",
            "lcstudy_complexity.csv": "MACs and parameters per stage", "lcstudy_standard.csv": "the standard codecs' "
            "measurements", "lcstudy_runs.csv": "one row per run: what it cost, how it stopped, where it ran"}
    titles = {f"lcstudy_{c.name}": c for c in chapters}
    for f in files:
        desc = described.get(f.name) or tidy.get(f.name)
        if desc is None:
            stem = f.stem
            ch = next((titles[k] for k in sorted(titles, key=len, reverse=True) if stem.startswith(k)), None)
            table = stem[len(f"lcstudy_{ch.name}_"):] if ch and stem != f"lcstudy_{ch.name}" else ""
            desc = (f"{{doc}}`{ch.title} <{ch.name}>`: " + (f"table *{table.replace('_', ' ')}*" if table
                                                           else "all its tables, one sheet each")) if ch else ""
        lines += [f"{{download}}`{f.name} <_generated/downloads/{f.name}>` — {desc}", ""]
        if f.suffix == ".csv":
            from ..chapters.findings import COLUMNS as FINDINGS

            cols = list(pd.read_csv(f, nrows=0).columns)
            words = {**columns, **FINDINGS} if f.stem.endswith("_findings") else columns
            rows = []
            for c in cols:
                h, _, what = words.get(c, (c, "", ""))
                rows.append(f"| `{c}` | {h} | {what} |")
            lines += ["| column | header | meaning |", "| --- | --- | --- |"] + rows + [""]
    return "\n".join(lines) + "\n"


def _days(first, last) -> str:
    """The days a platform's runs span: one date when they fit in one day ('2026-12-04 … 2026-12-04' read as
    a typo), else 'first … last'."""
    a, b = str(first)[:10], str(last)[:10]
    return a if a == b else f"{a} … {b}"
