"""Durable jobs: executions own tasks, workers lease tasks from the database, schedules fire."""
