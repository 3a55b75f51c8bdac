"""The command-line programs, one module each (`main(argv)` parses and calls the library;
`cli()` is the installed `idpulse-*` command, see pyproject's [project.scripts]). `scripts/*.py`
run the same `cli()` from a clone."""
