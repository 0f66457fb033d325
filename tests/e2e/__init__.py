"""End-to-end tests: the real API server and real `mtlsearch worker` processes."""
