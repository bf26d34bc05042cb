"""Shipped sample inputs (tiny face crops); see README.md and make_samples.py here."""
