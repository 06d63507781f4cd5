"""Fixtures of the command-line tests that live with the packages they exercise."""

from tests.tabular.conftest import adult, sex

__all__ = ["adult", "sex"]
