"""The web console under /console: server-rendered pages behind the admin token."""

from hookyard.console.app import build_console

__all__ = ["build_console"]
