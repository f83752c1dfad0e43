"""What a dry run would run: its cost report (the one place that uses Snakemake internals) and why."""
