"""MLflow 3 LoggedModels. The client lists a candidate's logged models whenever it reads the
candidate's artifacts through ``runs:/`` URIs, so search answers here; logged models
themselves are created by the registry's routes."""

from __future__ import annotations

from typing import Any

from modelyard.mlflow_api.wire import Context, Handler, Message
from modelyard.services import experiments


def search(ctx: Context, msg: Message) -> dict[str, Any]:
    for experiment_id in msg.strings("experiment_ids"):
        experiments.get(ctx.db, ctx.project_id, experiment_id)
    return {"models": []}


ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/logged-models/search", ("POST",), search),
]
