"""CHINR as a DVC pipeline: one module per concern, one thin script per stage in `stages/`."""
