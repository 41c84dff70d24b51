"""Command-line experiments: thin absl entry points over the nbajax library."""
