"""Vulnerability scanning and SBOMs (issue 18). Only the package inventory has landed so far."""
