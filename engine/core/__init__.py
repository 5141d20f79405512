"""Foundations every layer may use: clock, errors, database, settings, glossary, working-day calendar."""
