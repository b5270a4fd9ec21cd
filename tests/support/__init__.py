"""Helpers shared by the integration, end-to-end and benchmark suites.

Nothing here is collected by pytest: the modules build OCI layouts on disk, find or start a
PostgreSQL server, and run a real ``dockyard serve`` process.
"""
