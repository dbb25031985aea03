"""The errors a user can act on. Jobs print their message (no traceback) and exit non-zero.

A message never shows credentials: a URI in it loses its user-info and secret query values when the message is
rendered (``str(err)``, tracebacks included), wherever it was raised."""


class I2IError(Exception):
    """Base class: a problem with the user's input, configuration or environment."""

    def __str__(self) -> str:
        from pipelines.storage import redact  # storage imports this module

        return redact(super().__str__())


class ConfigError(I2IError):
    """An unknown key, a wrong type or a missing value in a config file or ``--set`` override."""


class StorageError(I2IError):
    """Object storage could not be reached or a URI could not be resolved."""


class DatasetError(I2IError):
    """A source dataset that cannot be imported (nothing usable, unknown layout, …)."""


class ShardIntegrityError(I2IError):
    """A shard that does not match its manifest (missing, wrong size or sha256)."""


class ConditionError(I2IError):
    """A translation condition (direction, seed, reference, domain, …) the model does not take."""


class LeaseHeldError(I2IError):
    """Another run holds the lease (e.g. the nightly of the same date is already running)."""


class RegistryError(I2IError):
    """A registered model or version that does not exist, or a registry operation that cannot proceed."""


def user_error(err: BaseException | None) -> I2IError | None:
    """The I2IError behind ``err``, also when it was raised inside a Ray task and wrapped by Ray."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, I2IError):
            cause = getattr(err, "cause", None)  # raised in a Ray task: Ray's copy renders as the task's traceback
            return cause if isinstance(cause, I2IError) else err
        seen.add(id(err))
        err = getattr(err, "cause", None) or err.__cause__
    return None
