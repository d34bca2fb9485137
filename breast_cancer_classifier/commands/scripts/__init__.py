"""The command lines of the scripts under ``src/`` (the original's paths and flags): one
module per script, each with ``build_parser()`` and ``main(argv=None)``; the file under
``src/`` only calls that ``main``."""
