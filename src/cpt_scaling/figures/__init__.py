"""Figures a paper would show, one module per study. Each module has ``draw(inputs, outputs)`` (paths by name,
as the rule declares them) and ``build_*`` functions returning matplotlib figures (used by tests).

Conventions: measured points are circles, points held out of a fit are stars, lines are fitted laws, dotted
lines are base models before continued pretraining.
"""
