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


class MissingExtraError(ConfigError):
    """A feature whose optional dependencies (a ``pip install 'i2i[EXTRA]'`` extra) are not installed."""


def require_extra(extra: str, *modules: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``what`` and the extra to install unless ``modules`` import."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{what} needs the optional dependencies of the '{extra}' extra ({', '.join(missing)} "
                                f"not installed): pip install 'i2i[{extra}]'")


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
    """The I2IError behind ``err``, also when it was raised inside a Ray task, actor or Ray Train worker and
    wrapped by Ray — and by a step that re-raised Ray's failure as an I2IError of its own (``training run … failed:
    <Ray's report>``): the user error raised inside Ray is the root cause, its one line the message to show."""
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, I2IError):
            cause = getattr(err, "cause", None)  # raised in a Ray task: Ray's copy renders as the task's traceback
            found = cause if isinstance(cause, I2IError) else err
            seen.add(id(found))
            err = found.__cause__
            if err is None or not _from_ray(err):  # only a failure Ray reported is looked into for a deeper one
                return found
        else:
            err = _inner(err)
    return found


def _from_ray(err: BaseException) -> bool:
    """An exception of Ray's (RayTaskError, a Ray Train TrainingFailedError, …); ray itself is not imported here."""
    return any(c.__module__.split(".")[0] == "ray" for c in type(err).__mro__)


def _inner(err: BaseException) -> BaseException | None:
    """The exception ``err`` reports: a Ray task's cause, a Ray Train worker group's failed worker (the first, by rank,
    that raised a user error, else the first), a Ray Train controller's failure, else the ``raise … from`` cause."""
    failures = getattr(err, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        ranked = [failures[rank] for rank in sorted(failures)]
        return next((e for e in ranked if user_error(e) is not None), ranked[0])
    return getattr(err, "cause", None) or getattr(err, "controller_failure", None) or err.__cause__
