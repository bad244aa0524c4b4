"""Streaming per-type evaluation: exact image metrics, binned pixel curves, AUPRO, result tables. Measuring only:
the forward pass's maths (image score, any-defect view and its fit) are ``mtfcdd.model``'s."""
