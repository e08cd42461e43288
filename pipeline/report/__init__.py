"""Reports: Markdown and plot helpers, the data report, the evaluation report and the comparison
of several trained models."""
