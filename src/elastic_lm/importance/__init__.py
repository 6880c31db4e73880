"""Importance: score the parts of a network on the user's text, then reorder it so that "keep the first
k" keeps the most important k. Decoder scores live in :mod:`elastic_lm.importance.decoder`."""
