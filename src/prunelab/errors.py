"""The one exception type a user can fix by changing their input.

Stages catch it at the top level and print its message without a traceback (see
``prunelab.pipeline.runner``); anything else is a bug and keeps its traceback.
"""


class PrunelabError(Exception):
    """Bad input or a missing prerequisite, explained in words a user can act on."""


class ConfigError(PrunelabError, ValueError):
    """A params.yaml value is invalid; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"params: {key} = {value!r} is invalid; allowed: {allowed}")
