"""The composition root: runs the parts, embedded in one process or each on its own."""
