"""Procedures as data: definitions (deploy, versions, specs), step properties, forms, expressions, serialization."""
