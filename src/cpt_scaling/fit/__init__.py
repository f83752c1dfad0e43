"""Fitting laws to (inputs, loss) points: optimisation, bootstrap, validation, and decisions read off fits."""
