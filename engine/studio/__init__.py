"""The procedure studio: drafts, validation, dry run, deploy, migration of running cases."""
