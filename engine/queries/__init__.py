"""Read models: the inbox, searches and reports."""
