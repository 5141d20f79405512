"""The subject registry: households with their members, projects; their edit history, import and export."""
