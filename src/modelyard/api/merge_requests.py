"""The native merge-request API under /api/v1/merge-requests: the project's merge requests
with candidates logged from CI (``ci.merge_request_id`` and ``ci.repository_url`` tags), with
the best value of a chosen metric."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.responses import Response

from modelyard.api.declare import QUERY, Args, Endpoint, Input, NoBody, Out, Reply, endpoint
from modelyard.api.fields import Millis
from modelyard.api.wire import respond
from modelyard.mlflow_api.wire import call
from modelyard.services import merge_requests

# Shapes -----------------------------------------------------------------------------------------


class BestCandidate(Out):
    metric: str
    value: float | None = Field(description="Its latest value (null when not finite).")
    run_id: str = Field(description="The candidate with that value (the newest on a tie).")


class MergeRequest(Out):
    id: str = Field(description="The merge request's iid or the pull request's number.")
    repository_url: str | None
    url: str | None = Field(description="The merge request's page, as the CI reported it.")
    provider: str | None = Field(description="gitlab, github, jenkins, … as the CI reported it.")
    source_branch: str | None
    target_branch: str | None
    candidates: int = Field(ge=1, description="Active candidates logged for it.")
    last_activity: Millis = Field(description="When a candidate last ended (or started).")
    best: BestCandidate | None = Field(
        description="The best latest value of the chosen metric; null without a metric or when "
        "no candidate logged it."
    )


class MergeRequestList(Out):
    merge_requests: list[MergeRequest] = Field(description="Most recently active first.")
    metric: str | None
    direction: Literal["max", "min"]
    next_offset: int | None = Field(description="The offset of the next page; null on the last.")


# Requests ---------------------------------------------------------------------------------------

MetricKey = Annotated[
    str,
    Field(
        pattern="^[^\\u0000-\\u001f\\u007f]{0,250}$",
        description="A metric key: at most 250 characters, no control characters. Empty: none.",
    ),
]


class MergeRequestQuery(Input):
    metric: Annotated[MetricKey, QUERY] = ""
    direction: Annotated[
        Literal["max", "min"],
        QUERY,
        Field(description="Whether the highest (max) or the lowest (min) value is best."),
    ] = "max"
    limit: Annotated[int, QUERY, Field(ge=1, le=merge_requests.MAX_PAGE)] = 100
    offset: Annotated[int, QUERY, Field(ge=0, le=2**62)] = 0


# Pages ------------------------------------------------------------------------------------------


@endpoint(
    "GET",
    "/merge-requests",
    "listMergeRequests",
    "Merge requests with candidates logged from CI, with the best value of a metric",
    description="A merge request is every active candidate with the same ci.merge_request_id "
    "and ci.repository_url tags, in the project's active experiments.",
    params=MergeRequestQuery,
    ok=Reply(200, "The merge requests.", MergeRequestList),
)
async def list_merge_requests(args: Args[MergeRequestQuery, NoBody]) -> Response:
    ctx, query = args.ctx, args.params
    found = await call(
        ctx,
        lambda: merge_requests.list_merge_requests(
            ctx.db,
            ctx.project_id,
            metric=query.metric or None,
            order=query.direction,
            limit=query.limit,
            offset=query.offset,
        ),
    )
    return respond(
        {
            "merge_requests": [item.to_json() for item in found.items],
            "metric": query.metric or None,
            "direction": query.direction,
            "next_offset": found.next_offset,
        }
    )


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (list_merge_requests,)
