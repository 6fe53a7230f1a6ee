"""The pipeline: which runs a profile makes (``plan``), executing run notebooks (``notebooks``,
``runner``) on this machine (``local``) or a SLURM cluster (``slurm``), what they cost
(``cost``), the data and weights they need (``data``, ``weights``), and laying out the book from
the results (``book``). The Makefile calls ``python -m lcstudy.pipeline``."""
