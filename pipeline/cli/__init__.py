"""The command line: what `python -m pipeline <stage>` shares across stages (`options`)."""
