"""One module per CLI command; see ``toygpt/__main__.py``."""
