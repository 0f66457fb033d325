"""mtlsearch: command line and Python client."""
