"""The merge-request pages: the project's list with the best value of a chosen metric, one
merge request's candidates with their pipeline, job and commit, the one-click compare; the CI
links of a candidate (http(s) only, anything else escaped text) and a version's chain from its
merge request. Runs logged by the stock mlflow client, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import requests

from tests.api.test_merge_requests import GITHUB, GITLAB, Yard, ci_tags, logged, yard
from tests.conftest import Server
from tests.ui.scripts import assert_only_safe_scripts
from tests.ui.test_models import get, no_raw_script, text_of
from tests.ui.test_runs import rows, section

__all__ = ["logged", "yard"]  # the fixtures
SCRIPT = "<script>alert(1)</script>"


def hrefs(html: str) -> list[str]:
    return [piece.split('"', 1)[0].replace("&amp;", "&") for piece in html.split('href="')[1:]]


def test_the_list_leads_to_candidates_and_compare(yard: Yard, logged: dict[str, str]) -> None:
    base = f"/projects/{yard.name}"
    server = yard.server
    page = get(server, f"{base}/ui/merge-requests", params={"metric": "acc"})
    assert page.status_code == 200, page.text
    html = page.text
    assert f'href="{base}/ui/merge-requests" id="nav-merge-requests"' in html
    table = rows(html, "merge-requests")
    assert "best acc (max)" in table[0][1]
    listed = [(cells[0].split()[0], cells[1], cells[3]) for _, cells in table[1:]]
    assert listed == [
        ("!7", GITLAB, "2"), ("!12", GITLAB, "4"), ("#12", GITHUB, "1"), ("!3", "—", "1")
    ]  # fmt: skip
    twelve = section(html, "merge-requests").split("<tr>")[3]
    links = hrefs(twelve)
    assert f"{GITLAB}/-/merge_requests/12" in links
    assert f"{base}/ui/runs/{logged['b']}" in links  # the best acc, 0.9
    assert ">0.9</a>" in twelve
    compare = next(link for link in links if "/ui/merge-requests/compare?" in link)
    candidates = next(link for link in links if "/ui/merge-requests/candidates?" in link)
    assert parse_qs(urlsplit(candidates).query) == {
        "id": ["12"], "repository": [GITLAB], "metric": ["acc"], "direction": ["max"]
    }  # fmt: skip
    single = section(html, "merge-requests").split("<tr>")[4]
    assert "/ui/merge-requests/compare?" not in single  # one candidate: nothing to compare

    # its candidates, the best acc first, with pipeline, job and commit
    page = get(server, candidates)
    assert page.status_code == 200, page.text
    html = page.text
    assert "Merge request !12" in text_of(section(html, "mr-title"))
    table = rows(html, "mr-candidates")
    assert [cells[1] for _, cells in table[1:]] == ["b", "c", "a", "nan"]
    assert [cells[-1] for _, cells in table[1:]] == ["0.9", "0.85", "0.8", "nan"]
    assert [cells[5:8] for _, cells in table[1:2]] == [["101", "1011", "a" * 12]]
    first = section(html, "mr-candidates").split("<tr>")[2]
    assert f'href="{GITLAB}/-/pipelines/101"' in first
    assert f'href="{GITLAB}/-/commit/{"a" * 40}"' in first
    facts = section(html, "mr-facts")
    assert f'href="{GITLAB}/-/merge_requests/12"' in facts
    tables = hrefs(section(html, "in-tables"))
    assert len(tables) == 2  # the two experiments it ran in, filtered to it
    filters = [parse_qs(urlsplit(t).query)["filter"] for t in tables]
    assert (
        filters
        == [[f"tags.`ci.merge_request_id` = '12' AND tags.`ci.repository_url` = '{GITLAB}'"]] * 2
    )
    shown = set()
    for table_url in tables:
        in_table = get(server, table_url)
        assert in_table.status_code == 200
        assert 'id="filter-error"' not in in_table.text
        shown.update(cells[1] for _, cells in rows(in_table.text, "candidates")[1:])
    assert shown == {"a", "b", "c", "nan"}  # not #12 of the other repository
    one_click = next(link for link in hrefs(section(html, "selection")) if "/ui/compare?" in link)
    assert parse_qs(urlsplit(one_click).query)["runs"] == [
        logged[n] for n in ("b", "c", "a", "nan")
    ]

    # one click from the list: a comparison of its candidates, the best first
    moved = get(server, compare)
    assert moved.status_code == 303
    assert moved.headers["location"] == one_click
    compared = get(server, moved.headers["location"])
    assert compared.status_code == 200
    assert all(name in compared.text for name in ("b", "c", "a", "nan"))

    # a merge request of another repository is another merge request
    github = get(
        server, f"{base}/ui/merge-requests/candidates", params={"id": "12", "repository": GITHUB}
    )
    assert [cells[1] for _, cells in rows(github.text, "mr-candidates")[1:]] == ["gh"]
    assert "Merge request #12" in github.text
    bare = get(server, f"{base}/ui/merge-requests/candidates", params={"id": "3"})
    assert len(rows(bare.text, "mr-candidates")) == 2


def test_bad_requests_answer_pages_not_500(yard: Yard, logged: dict[str, str]) -> None:
    base = f"/projects/{yard.name}/ui/merge-requests"
    cases = [
        ("", {"metric": "a\x00b"}, 400),
        ("", {"metric": "m" * 251}, 400),
        ("", {"direction": "sideways"}, 400),
        ("", {"offset": "-3"}, 400),
        ("", {"offset": "9" * 20}, 400),
        ("/candidates", {}, 400),
        ("/candidates", {"id": "12\x00"}, 400),
        ("/candidates", {"id": "12", "repository": "https://elsewhere.example"}, 404),
        ("/candidates", {"id": SCRIPT}, 404),
        ("/compare", {"id": "3"}, 400),
        ("/compare", {"id": "404"}, 400),
    ]
    for path, params, status in cases:
        answer = get(yard.server, base + path, params=params)
        assert answer.status_code == status, (path, params, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html")
        no_raw_script(answer.text)
    empty = get(yard.server, base, params={"offset": "100"})
    assert empty.status_code == 200
    assert 'id="previous-page"' in empty.text


def test_paging_the_list(yard: Yard) -> None:
    experiment = yard.client.create_experiment(f"many-{uuid.uuid4().hex[:6]}")
    for number in range(53):
        tags = ci_tags(str(number), GITLAB, "1")
        yard.client.create_run(experiment, start_time=1_800_000_000_000 + number, tags=tags)
    base = f"/projects/{yard.name}"
    first = get(yard.server, f"{base}/ui/merge-requests").text
    assert len(rows(first, "merge-requests")) == 51
    following = next(h for h in hrefs(section(first, "next-page")))
    second = get(yard.server, following).text
    assert [cells[0].split()[0] for _, cells in rows(second, "merge-requests")[1:]] == [
        "!2",
        "!1",
        "!0",
    ]
    assert 'id="next-page"' not in second


def test_candidate_links_only_to_the_web(server: Server, client: Any, experiment_id: str) -> None:
    hostile = client.create_run(
        experiment_id,
        run_name="hostile",
        tags={
            "ci.provider": "gitlab",
            "ci.merge_request_id": "5",
            "ci.merge_request_url": "javascript:alert(1)",
            "ci.pipeline_id": "77",
            "ci.pipeline_url": "https://ci.example.com/p/77",
            "ci.job_url": f"data:text/html,{SCRIPT}",
            "ci.commit": "b" * 40,
            "ci.repository_url": "git@gitlab.example.com:ml/churn.git",
            "ci.triggered_by": SCRIPT,
        },
    ).info.run_id
    html = get(server, f"/ui/runs/{hostile}").text
    assert SCRIPT not in html
    assert_only_safe_scripts(html)
    ci = section(html, "ci")
    links = hrefs(ci)
    assert "https://ci.example.com/p/77" in links
    assert not [link for link in links if not link.startswith(("https://", "/ui/"))]
    assert "javascript:" not in " ".join(hrefs(html))
    assert "data:text" not in " ".join(hrefs(html))
    assert "data:text/html,&lt;script&gt;" in ci  # shown as text
    mr_page = next(link for link in links if link.startswith("/ui/merge-requests/candidates"))
    assert parse_qs(urlsplit(mr_page).query) == {
        "id": ["5"], "repository": ["git@gitlab.example.com:ml/churn.git"]
    }  # fmt: skip
    assert get(server, mr_page).status_code == 200
    assert "b" * 40 in text_of(ci)  # the commit as text: its repository is no web address

    safe = client.create_run(experiment_id, tags=ci_tags("6", GITHUB, "88")).info.run_id
    links = hrefs(section(get(server, f"/ui/runs/{safe}").text, "ci"))
    assert f"{GITHUB}/commit/{'a' * 40}" in links
    assert f"{GITHUB}/-/merge_requests/6" in links
    assert f"{GITHUB}/-/pipelines/88" in links
    local = client.create_run(experiment_id, tags={"mlflow.source.git.commit": "c" * 40})
    assert 'id="ci"' not in get(server, f"/ui/runs/{local.info.run_id}").text


def test_version_chain_starts_at_the_merge_request(
    server: Server, client: Any, experiment_id: str
) -> None:
    import mlflow

    run_id = client.create_run(
        experiment_id, run_name="from-ci", tags=ci_tags("41", GITLAB, "4100")
    ).info.run_id
    mlflow.log_text("flavors: {}\n", "model/MLmodel", run_id=run_id)
    name = f"chain-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as http:
        made = http.post(f"/models/{name}/versions", json={"candidate": run_id})
    assert made.status_code == 201, made.text
    html = get(server, f"/ui/models/{name}/versions/1").text
    chain = section(html, "lineage-chain")
    text = text_of(chain)
    order = ["merge request", "!41", "pipeline", "4100", "job", "41001", "from-ci", f"{name} v1"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions), text
    links = hrefs(chain)
    mr_page = next(link for link in links if link.startswith("/ui/merge-requests/candidates?"))
    assert parse_qs(urlsplit(mr_page).query) == {"id": ["41"], "repository": [GITLAB]}
    assert f"{GITLAB}/-/merge_requests/41" in links
    assert f"{GITLAB}/-/pipelines/4100" in links
    assert f"/ui/runs/{run_id}" in links
    candidates = requests.get(server.url + mr_page, timeout=30)
    assert candidates.status_code == 200
    assert [cells[1] for _, cells in rows(candidates.text, "mr-candidates")[1:]] == ["from-ci"]
