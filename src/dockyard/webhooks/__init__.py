"""Webhooks: per-project policies that deliver registry events to HTTP and Slack targets."""
