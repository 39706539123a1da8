"""vida-factory evaluation package: parsing, official-exact scoring, submissions."""

__version__ = "0.1.0"
