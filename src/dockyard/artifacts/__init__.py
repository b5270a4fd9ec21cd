"""Repositories, artifacts and tags as Harbor's API shows them (browse, tag, copy, delete)."""
