"""LM-Action: a task classifier that gates the commands given to Large Action Models."""

__version__ = "0.1.0"
