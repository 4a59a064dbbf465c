"""The client's benchmark: ``modelyard models pull`` of one big file against ``curl`` fetching
the same file from the same server, and the command's start-up (``modelyard models list``).

A modelyard server starts in a temporary folder on a free loopback port; a candidate gets one
file of --mib MiB (1024 by default), promoted into version 1 of ``bench``. Then, alternately,
``curl -o FILE`` fetches the version's file and ``modelyard models pull`` fetches the version
into a new folder (sha256 checked, lock file written), each --repeat times; the best times
are compared (target: pull within 1.5x of curl). Start-up: ``modelyard models list`` against
20 models, --calls times, median and 90th percentile wall time (target: under 300 ms), next
to ``python -c pass`` as the floor.

    .venv/bin/python bench/client.py
    .venv/bin/python bench/client.py --mib 256 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
MODELYARD = str(BIN / "modelyard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    proc = subprocess.Popen(
        [MODELYARD, "server", "--data-dir", str(folder / "data"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def seed(url: str, mib: int) -> None:
    api = f"{url}/api/2.0/mlflow"
    run = requests.post(f"{api}/runs/create", json={"experiment_id": "0"}, timeout=30).json()
    run_id = run["run"]["info"]["run_id"]
    block = os.urandom(1024 * 1024)
    body = (i.to_bytes(8, "big") + block[8:] for i in range(mib))
    target = f"{url}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/model/big.bin"
    requests.put(target, data=body, timeout=3600).raise_for_status()
    for i in range(20):
        made = requests.post(
            f"{url}/api/v1/models/{'bench' if i == 0 else f'm{i:02d}'}/versions",
            json={"candidate": run_id},
            timeout=60,
        )
        made.raise_for_status()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the comparison")
    folder = Path(tempfile.mkdtemp(prefix="bench-client-"))
    proc, url = start_server(folder)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        "MLFLOW_TRACKING_URI": url,
    }
    try:
        print(f"seeding a {args.mib} MiB file ...", file=sys.stderr)
        seed(url, args.mib)
        file_url = f"{url}/api/v1/models/bench/versions/1/files/big.bin"
        curl, pull = [], []
        for _ in range(args.repeat):
            out = folder / "curl.bin"
            curl.append(timed(["curl", "-sf", "-o", str(out), file_url], env))
            out.unlink()
            dest = folder / "pulled"
            pull.append(timed([MODELYARD, "models", "pull", "bench", "1", str(dest)], env))
            shutil.rmtree(dest)
        listing = [timed([MODELYARD, "models", "list"], env) for _ in range(args.calls)]
        floor = [timed([sys.executable, "-c", "pass"], env) for _ in range(args.calls)]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    size = args.mib / 1024
    best_curl, best_pull = min(curl), min(pull)
    ratio = best_pull / best_curl
    median = statistics.median(listing)
    p90 = sorted(listing)[int(0.9 * (len(listing) - 1))]
    rate = lambda t: f"{t:9.2f} s {size / t:6.2f} GiB/s"  # noqa: E731
    rows = [
        (f"curl -o, best of {args.repeat}", rate(best_curl), ""),
        (f"models pull, best of {args.repeat}", rate(best_pull), ""),
        ("pull / curl", f"{ratio:.2f}x", f"<= 1.5  {'ok' if ratio <= 1.5 else 'MISS'}"),
        ("models list, median", f"{median * 1000:.0f} ms", f"< 300  {_ok(median < 0.3)}"),
        ("models list, p90", f"{p90 * 1000:.0f} ms", ""),
        ("python -c pass, median", f"{statistics.median(floor) * 1000:.0f} ms", ""),
    ]
    print(f"{'what':<30}{'result':>24}  target")
    for what, result, target in rows:
        print(f"{what:<30}{result:>24}  {target}".rstrip())


def _ok(met: bool) -> str:
    return "ok" if met else "MISS"


if __name__ == "__main__":
    main()
