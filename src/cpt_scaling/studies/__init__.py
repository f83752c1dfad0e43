"""Studies: turn a sweep's evaluation tables into the points of each law, fit them, and answer the decisions.

- :mod:`.dcpt`: D-CPT Law per domain (domain and general loss vs N, D, r) and its three usages.
- :mod:`.chinchilla`: Chinchilla form on the pretraining runs and its compute-optimal frontier.
- :mod:`.specialization`: specialist vs general models across sizes (best-checkpoint perplexity, SGER, forgetting).
- :mod:`.split`: the split law L(N, D, D') for pretraining then specialisation, optimal split and multiplier.
"""
