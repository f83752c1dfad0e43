"""Data stages: document readers, domain classification, tokenizers, token shards and packed sequences."""

#: The unfiltered pool corpus: every classified document whatever its label or score (the seed's generalist trains
#: on it). Its shards exclude every document held out of any corpus: held-out membership is a function of the
#: document's hash alone.
POOL = "pool"
