"""Labels: global (system) and project labels, attached to artifacts."""
