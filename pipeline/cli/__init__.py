"""The command line: one module per stage of `python -m pipeline` (each a `configure_parser` and a
`main` that parses the arguments, reads the files, calls the stage's pure core and writes its
outputs), and the options they share (`options`). Nothing below `pipeline.cli` imports it."""
