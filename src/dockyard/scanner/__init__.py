"""The built-in scanner (issue 18): package inventory, OSV vulnerability data, matching and
its scanner-adapter face, kept apart from `scan/` so it could be split out as a service."""
