"""The Zarr store: its schema, the writer used by workers and the lazy reader."""
