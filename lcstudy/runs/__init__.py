"""Runs and their storage: parameters and identity (``params``, ``profiles``), the one run
protocol (``protocol``) for the learned (``learned``) and standard (``standard_subject``) codecs, the
machine lock and pause (``lock``), the results layout (``layout``, ``store``) and the tidy tables
rebuilt from it (``tidy``)."""
