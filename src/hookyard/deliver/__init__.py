"""Outbound delivery: the worker loop, the retry policy, signing and the HTTP sender."""
