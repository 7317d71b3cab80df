"""Tests of the test bed's own parts: the Slack emulator answers as Slack does."""
