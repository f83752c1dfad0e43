"""Loading, validating and normalising a workflow config (schema as package data), the names it fixes for the whole
pipeline, Hugging Face metadata."""
