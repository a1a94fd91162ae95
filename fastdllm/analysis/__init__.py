"""Analyses behind the figures: run folders from ``evaluate``, key/value similarity across decoding steps."""
