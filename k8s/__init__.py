"""Cluster operations for AccessBot.

This package talks only to the Kubernetes API: it knows nothing of Slack or
Redis. The workflow in :mod:`bot` calls it.
"""
