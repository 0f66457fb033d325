"""service: the FastAPI application of mtlsearch (`service.main.create_app`)."""
