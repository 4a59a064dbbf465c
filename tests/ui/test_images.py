"""Which of a candidate's files are images logged with a key and a step, in both namings."""

from __future__ import annotations

from modelyard.ui.images import stepped_images

UUIDS = ["1b4e28ba-2fa1-11d2-883f-0016d3cca427", "6fa459ea-ee8a-3ca4-894e-db77e160355e"]


def test_both_namings_grouped_by_key_in_step_order() -> None:
    paths = [
        f"images/dogs+step+10+timestamp+1700000000500+{UUIDS[0]}.png",
        f"images/dogs+step+10+timestamp+1700000000500+{UUIDS[0]}+compressed.webp",
        f"images/dogs+step+2+timestamp+1700000000400+{UUIDS[1]}.png",
        f"images/a~b%step%3%timestamp%1700000000000%{UUIDS[0]}.png",
        f"images/a~b%step%3%timestamp%1700000000000%{UUIDS[0]}%compressed.webp",
        f"images/c#d%step%0%timestamp%1700000000000%{UUIDS[1]}.png",
        "images/plain.png",
        f"images/dogs+step+x+timestamp+1+{UUIDS[0]}.png",
        f"images/mixed+step%1%timestamp%1%{UUIDS[0]}.png",
        "notes.txt",
    ]
    found = {entry.key: entry.steps for entry in stepped_images(paths)}
    assert sorted(found) == ["a/b", "c/d", "dogs"]
    dogs = found["dogs"]
    assert [s.step for s in dogs] == [2, 10]
    assert dogs[1].path == paths[0]
    assert dogs[1].preview == paths[1]
    assert dogs[0].preview == dogs[0].path == paths[2]
    assert dogs[1].timestamp == 1_700_000_000_500
    assert found["a/b"][0].preview == paths[4]
    assert found["c/d"][0].path == paths[5]
