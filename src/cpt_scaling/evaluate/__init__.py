"""Evaluation: held-out loss per checkpoint, exams, and the tidy tables of a sweep."""
