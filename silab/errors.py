"""Errors that end a command with a one-line message instead of a traceback."""
import argparse


class UsageError(Exception):
    """Bad input from the user (profile, flag, path): printed as one line, exit code 2."""


class UsageParser(argparse.ArgumentParser):
    """argparse, but a usage error raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message):
        raise UsageError(message)
