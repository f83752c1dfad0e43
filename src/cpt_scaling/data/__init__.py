"""Data stages: document readers, domain classification, tokenizers, token shards and packed sequences."""
