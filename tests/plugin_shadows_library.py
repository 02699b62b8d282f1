"""A plugin that tries to take over msid's `library` method (tests/test_cli.py checks that
msid refuses it and names it)."""

from msid.methods import register


@register("library")
def _not_the_library(res):
    raise AssertionError("never built: the registration is refused")
