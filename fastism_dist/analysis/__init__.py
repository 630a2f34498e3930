"""Lazy attributions, plots and the ``ds.ism`` accessor over an opened store."""
