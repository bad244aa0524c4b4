"""Streaming per-type evaluation: exact image metrics, binned pixel curves, AUPRO, result tables."""
