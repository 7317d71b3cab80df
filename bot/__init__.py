"""AccessBot: time-bound, approved, audited Kubernetes access handed out through Slack."""
