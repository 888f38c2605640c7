"""triplicate: watch folders, make verified 3-2-1 copies, prove them with ASC MHL."""

__version__ = "0.1.0"
