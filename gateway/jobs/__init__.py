"""Background work run from the command line: retries, migrations."""
