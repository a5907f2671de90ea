"""The ``openai-compatible`` engine: a deployment served by someone else's endpoint.

Either a preset (``provider: dashscope``; see ``presets.py``) or a bare ``base_url`` (vLLM on
another machine, any OpenAI-compatible proxy). ``base_url`` always wins over the preset's URL,
which is also how tests aim a preset at a local stand-in.

Keys are read from the environment when the deployment is resolved, never from the config
file, so secrets stay out of YAML and a rotated key is picked up on the next resolve.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from lingyun.engines.base import Deployment, UpstreamSpec
from lingyun.engines.upstream.base import ProviderDialect
from lingyun.engines.upstream.openai import GenericDialect
from lingyun.engines.upstream.outbound import check_base_url, check_key_env, redact_url
from lingyun.engines.upstream.presets import PRESETS, ProviderPreset


class OpenAICompatibleEngine:
    """Implements ``UpstreamEngine``: turns a deployment into an ``UpstreamSpec``."""

    name = "openai-compatible"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # None: read os.environ at each call (so keys set after start-up count).
        self._environ = environ

    def upstream(self, dep: Deployment) -> UpstreamSpec:
        preset = self._preset(dep)
        if dep.base_url:
            base_url = _checked_url(dep.name, dep.base_url)
        elif preset is not None:
            try:
                base_url = preset.base_url(dep.region)
            except ValueError as exc:
                raise ValueError(f"deployment {dep.name!r}: {exc}") from exc
        else:
            raise ValueError(
                f"deployment {dep.name!r}: engine openai-compatible needs provider: "
                f"(one of {sorted(PRESETS)}) or base_url:"
            )
        dialect: ProviderDialect = (
            preset.dialect if preset is not None else GenericDialect(_server_name(base_url))
        )
        key = self._api_key(dep, preset)
        headers = dialect.auth_headers(key) if key else {}
        return UpstreamSpec(
            base_url=base_url,
            model_id=self._model_id(dep, preset),
            headers=headers,
            dialect=dialect,
        )

    @staticmethod
    def _preset(dep: Deployment) -> ProviderPreset | None:
        if dep.provider is None:
            return None
        preset = PRESETS.get(dep.provider.lower())
        if preset is None:
            raise ValueError(
                f"deployment {dep.name!r}: unknown provider {dep.provider!r}; choose one of "
                f"{sorted(PRESETS)}, or leave provider out and set base_url"
            )
        return preset

    @staticmethod
    def _model_id(dep: Deployment, preset: ProviderPreset | None) -> str:
        model = (dep.model or "").strip()
        if model:
            return model
        if preset is not None:
            raise ValueError(
                f"deployment {dep.name!r}: set model: to the id {preset.display_name} "
                f"expects ({preset.model_hint})"
            )
        # A bare server (vLLM --served-model-name) is often started under the public name.
        return dep.name

    def _api_key(self, dep: Deployment, preset: ProviderPreset | None) -> str | None:
        env_name = dep.api_key_env or (preset.api_key_env if preset is not None else None)
        if dep.api_key_env:
            check_key_env(dep.api_key_env)  # a DeploymentConfig built without validation
        if env_name is None:
            return None  # a bare base_url without api_key_env: an open server
        environ = self._environ if self._environ is not None else os.environ
        key = environ.get(env_name, "").strip()
        if key:
            return key
        who = f"provider {preset.name}" if preset is not None else "its upstream server"
        raise ValueError(
            f"deployment {dep.name!r} ({who}) needs an API key: set the environment "
            f"variable {env_name}"
            + ("" if dep.api_key_env else ", or name another one with api_key_env:")
        )


def _checked_url(dep_name: str, url: str) -> str:
    try:
        return check_base_url(url)
    except ValueError as exc:
        raise ValueError(f"deployment {dep_name!r}: {exc}") from None


def _server_name(base_url: str) -> str:
    """How messages name a bare server: its address, which the operator will recognise."""
    return f"the upstream server {urlsplit(redact_url(base_url)).netloc}"
