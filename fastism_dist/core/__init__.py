"""The ISM algorithm on one process: graph reader, layer rules, plan, executors, self-check."""
