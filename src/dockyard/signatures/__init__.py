"""Signatures: verifying cosign and Notation signatures against trusted keys, and making
cosign signatures (``dockyard sign``). Pure: no database, no HTTP server code
(docs/signatures.md, "Verification")."""
