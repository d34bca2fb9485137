"""The tool commands: each one's flags and entry point, run by ``bcc <command>`` and by the
scripts under ``src/utilities/`` at the original's paths."""
