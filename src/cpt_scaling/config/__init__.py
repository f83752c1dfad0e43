"""Loading, validating and normalising a workflow config (schema as package data), Hugging Face metadata."""
