"""The ``sae-store`` command line: parse arguments, build configs, call the library. No logic here."""
