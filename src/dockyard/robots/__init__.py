"""Robot accounts (Harbor's v2 robots): system- and project-level, explicit permissions."""
