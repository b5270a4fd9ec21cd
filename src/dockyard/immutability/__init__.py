"""Tag immutability rules: tags that may be pushed once and never moved or deleted."""
