"""The service layer: what the routes call. Routes only parse requests and translate."""
