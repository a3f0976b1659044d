"""Secret settings from files: ``X_FILE`` names a file whose content is setting ``X`` (the ``*_FILE`` convention
of Docker secrets, e.g. ``API_TOKENS_FILE=/run/secrets/api_tokens``).

A settings class names its secret settings in ``SECRETS``; only those have a ``_FILE`` form. ``X_FILE`` is read
from the environment or the ``.env`` file like any other variable, and the file's content, less its trailing
newline, is the value. Mistakes stop the service at start, naming the variable and the path, never the content:
``X`` and ``X_FILE`` both set, a file that cannot be read, an empty one. An empty ``X`` or ``X_FILE`` counts as
unset (compose's ``${X:-}``), as in the official images' ``file_env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsError

FILE_SUFFIX = "_file"


class SecretFileError(SettingsError):
    """A secret setting's ``_FILE`` form is misconfigured; the message names variables and paths only."""


def secret_names(settings_cls: type[BaseSettings]) -> tuple[str, ...]:
    """The settings of this class that may come from a file (its ``SECRETS``)."""
    names: tuple[str, ...] = getattr(settings_cls, "SECRETS", ())
    return names


def check_secret_names(settings_cls: type[BaseSettings]) -> None:
    """Each name in ``SECRETS`` is a setting of the class, and its ``_file`` form is not another setting."""
    fields = settings_cls.model_fields
    unknown = [name for name in secret_names(settings_cls) if name not in fields]
    if unknown:
        raise TypeError(f"{settings_cls.__name__}.SECRETS names no setting: {unknown}")
    clashes = [name for name in secret_names(settings_cls) if name + FILE_SUFFIX in fields]
    if clashes:
        raise TypeError(f"{settings_cls.__name__}.SECRETS: {clashes} have a setting named like their _FILE form")


class SecretFilesSource(PydanticBaseSettingsSource):
    """``X`` from the file ``X_FILE`` names, for each ``X`` in the class's ``SECRETS``.

    ``environments`` are the sources whose variables are looked at for ``X`` and ``X_FILE``, the first that has
    one winning (the environment, then the ``.env`` file, as for every setting).
    """

    def __init__(self, settings_cls: type[BaseSettings], *environments: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._variables: list[Mapping[str, str | None]] = [
            {name.lower(): value for name, value in source.env_vars.items()}
            for source in environments
            if isinstance(source, EnvSettingsSource)  # a DotEnvSettingsSource is one too
        ]

    def _lookup(self, name: str) -> str:
        """The first non-empty value of the variable ``name`` (any case), or ""."""
        for variables in self._variables:
            value = variables.get(name.lower())
            if value:
                return value
        return ""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every secret at once, to report every mistake together

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name in secret_names(self.settings_cls):
            variable = name.upper()
            path = self._lookup(name + FILE_SUFFIX)
            if not path:
                continue
            if self._lookup(name):
                problems.append(f"{variable} and {variable}_FILE are both set; set one of them")
                continue
            try:
                text = Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                problems.append(f"{variable}_FILE: {path} is not UTF-8 text")
                continue
            except OSError as error:
                problems.append(f"{variable}_FILE: cannot read {path} ({error.strerror or type(error).__name__})")
                continue
            value = text.rstrip("\r\n")
            if not value.strip():
                problems.append(f"{variable}_FILE: {path} is empty")
                continue
            values[name] = value
        if problems:
            raise SecretFileError("; ".join(problems))
        return values

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secrets={secret_names(self.settings_cls)!r})"
