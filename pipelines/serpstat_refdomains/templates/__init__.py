"""What `refdomains init` writes into a project (scaffold.py): the schedules, the .gitignore and
the part of .dlt/secrets.toml that is not generated from SerpstatConfiguration. Package data: they
ship inside the wheel."""
