"""Prefect 3 flows: ``collect``, ``train``, ``evaluate``."""
