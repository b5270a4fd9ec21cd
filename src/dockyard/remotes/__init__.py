"""Registry endpoints (Harbor's ``/registries``) and one adapter per kind of remote registry."""
