"""nbajax test suite."""
