"""``python -m dream_window``: the CLI, with Ctrl-C and SIGTERM handled from the first instant.

The handlers go in before the slow imports (see ``early_signals``); a signal that arrived during
them and was swallowed on the way (inside a weakref callback of the import system) exits as soon
as the imports are done.
"""

from __future__ import annotations

from dream_window import early_signals


def main() -> None:
    early_signals.install()
    from dream_window.cli import main as cli  # slow: after the handlers, on purpose

    early_signals.exit_if_signalled()
    cli()


if __name__ == "__main__":
    main()
