"""A sample corpus for a machine without one: the manifest of public photos and its downloader."""
