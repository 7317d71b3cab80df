"""AccessBot's use cases, one module per concept; adapters (Slack, HTTP, CLI) call these."""
