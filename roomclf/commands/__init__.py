"""Thin click commands: each parses its options and calls the package."""
