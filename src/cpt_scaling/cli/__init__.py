"""The ``cpt-scaling`` command line: one module per group of subcommands (``python -m cpt_scaling.cli``)."""
