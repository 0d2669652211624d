"""Experiment code behind scripts/simulations.py and scripts/make_tables.py; ``import rankseg`` skips it."""
