"""The pipeline: which runs a profile makes (``plan``), executing run notebooks (``notebooks``, ``runner``)
on this machine (``local``) or a SLURM cluster (``slurm``), what they cost (``cost``), the data and
weights they need (``data``, ``weights``), laying out the book from the results (``book``), and the
benchmarks of the study's own overhead and start-up (``bench``). The Makefile calls ``python -m
lcstudy.pipeline``."""
