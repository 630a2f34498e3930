"""Scoring many sequences on a Dask cluster into a Zarr store."""
