"""Exceptions raised by the core.

    ApsError
    ├── ConfigError          a tenant, policy or scheduler setting is invalid
    └── InvalidRequest       a request can never be served as given (bad input at submit)
        ├── UnknownTenant    its tenant is not configured
        └── NeverFits        it can never fit the KV cache, the step budget or its tenant's burst
    UnknownRequest           a request id the scheduler does not hold (also a KeyError)
"""


class ApsError(Exception):
    pass


class ConfigError(ApsError, ValueError):
    pass


class InvalidRequest(ApsError, ValueError):
    pass


class UnknownTenant(InvalidRequest):
    pass


class NeverFits(InvalidRequest):
    pass


class UnknownRequest(ApsError, KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "unknown request"
