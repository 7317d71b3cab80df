"""The HTTP service: Slack events, the HR offboarding webhook, health and metrics."""
