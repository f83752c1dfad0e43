"""cpt-scaling: domain continued-pretraining scaling studies, from raw text to fitted laws and decisions."""

__version__ = "0.1.0"
