"""One filter grammar for every search, compiled to indexed SQL."""
