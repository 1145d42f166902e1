"""Raster input and GIS output: the two ends of the pipeline."""
