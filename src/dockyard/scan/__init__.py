"""Vulnerability scanning and SBOMs (issue 18): registrations, the adapter client, scan jobs.

The built-in scanner, its package inventory included, lives in `scanner/`.
"""
