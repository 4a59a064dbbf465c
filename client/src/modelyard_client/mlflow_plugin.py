"""An MLflow run-context provider (entry point group ``mlflow.run_context_provider``): every run
started with ``mlflow.start_run`` inside a CI job gets the ``ci.*`` tags of ``ci_env``, and
MLflow's ``mlflow.source.git.commit``/``branch``/``repoURL`` where MLflow found none.

MLflow merges the tags of its providers in registration order (its own first, plugins after)
and the tags given to ``start_run`` last, so a tag the user sets always wins. This provider
leaves out the git tags MLflow's own git provider already found, so it never replaces them
either. Outside CI it adds nothing. Importing this module imports nothing of MLflow."""

from __future__ import annotations

from typing import Any

from modelyard_client.ci_env import detect


def _mlflow_git_tags() -> dict[str, Any]:
    """The tags MLflow's own git provider gives this run (its answer is cached)."""
    try:
        from mlflow.tracking.context.git_context import GitRunContext
        from mlflow.tracking.context.registry import _run_context_provider_registry

        for provider in _run_context_provider_registry:
            if isinstance(provider, GitRunContext):
                ask: Any = provider  # MLflow's providers are untyped
                return dict(ask.tags()) if ask.in_context() else {}
    except Exception:  # MLflow's internals moved: take it that it found nothing
        return {}
    return {}


class CiRunContext:
    """The CI job a run starts in, as tags."""

    def in_context(self) -> bool:
        return detect() is not None

    def tags(self) -> dict[str, str]:
        found = detect()
        if found is None:
            return {}
        known = _mlflow_git_tags()
        missing = {k: v for k, v in found.git_tags().items() if not known.get(k)}
        return {**found.tags, **missing}
