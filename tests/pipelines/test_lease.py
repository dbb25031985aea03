"""The nightly's same-date guard without a Jobs API (KubeRay RayJob / RayCronJob have none): a lease in the state
store, locally and on S3. Cheap: the scheduled model fails at its shard step (an empty source), so nothing trains."""

import json
import os
import threading
import time
import uuid

import pytest
import yaml

from jobs import nightly as nightly_job
from pipelines import lease, storage
from pipelines.errors import LeaseHeldError
from pipelines.nightly import LEASE_FILE, load_schedule, run_schedule
from tests.conftest import BUCKET

DATE = "2031-03-04"


def _state(where: str, tmp_path) -> str:
    return str(tmp_path / "state") if where == "local" else f"s3://{BUCKET}/lease-{uuid.uuid4().hex[:8]}/state"


def _schedule(tmp_path, name: str, state: str, model_config: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"state": state, "models": [{"name": "m", "config": model_config}]}))
    return str(path)


def _quick_config(tmp_path) -> str:
    """A pipeline config whose shard step fails at once (no source files): the run ends in a second."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    return yaml.safe_dump({"shard": {"source": str(tmp_path / "empty"), "output": str(tmp_path / "shards")},
                           "train": {"dataset": str(tmp_path / "shards")}})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_second_run_of_a_date_is_refused_while_the_first_holds_the_lease(where, s3_endpoint, tmp_path, capsys):
    state = _state(where, tmp_path)
    lease_uri = storage.join(state, DATE, LEASE_FILE)
    fifo = tmp_path / "model.yaml"  # run A blocks reading its model config (inside the lease) until we write it
    os.mkfifo(fifo)
    plain = tmp_path / "plain.yaml"
    plain.write_text(_quick_config(tmp_path))
    first = {}
    a = threading.Thread(target=lambda: first.update(
        summary=run_schedule(load_schedule(_schedule(tmp_path, "a", state, str(fifo))), DATE)))
    a.start()
    try:
        deadline = time.time() + 30
        while not storage.exists(lease_uri):
            assert a.is_alive() and time.time() < deadline, "run A never took the lease"
            time.sleep(0.1)
        held = storage.read_json(lease_uri)
        assert held["pid"] == os.getpid() and {"holder", "host", "started", "expires"} <= set(held)

        # run B, as the job: refused with the holder and the expiry, exit code 2, nothing of it written
        second = _schedule(tmp_path, "b", state, str(plain))
        capsys.readouterr()
        assert nightly_job.main(["--schedule", second, "--date", DATE]) == 2
        out = capsys.readouterr()
        error = json.loads(out.out)["error"]
        assert "already running" in error and held["holder"] in error and held["expires"] in error
        assert "already running" in out.err
        assert not storage.exists(storage.join(state, DATE, "summary.json"))
    finally:
        with open(fifo, "w") as f:  # let A go on: its model fails at the shard step
            f.write(_quick_config(tmp_path))
        a.join(timeout=60)
    assert first["summary"]["failed"] == ["m"] and "no files found" in first["summary"]["models"][0]["reason"]
    assert not storage.exists(lease_uri)  # released at the end

    # the lease is free again: a later run of the date goes ahead
    assert run_schedule(load_schedule(second), DATE)["failed"] == ["m"]
    assert not storage.exists(lease_uri)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_expired_lease_is_taken_over_and_the_run_says_so(where, s3_endpoint, tmp_path, caplog):
    state = _state(where, tmp_path)
    lease_uri = storage.join(state, DATE, LEASE_FILE)
    dead = {"holder": "ray@dead-pod:1", "host": "dead-pod", "pid": 1, "started": "2021-03-04T02:00:00+00:00",
            "expires": "2021-03-04T14:00:00+00:00", "token": "t" * 32}
    storage.write_bytes(lease_uri, json.dumps(dead).encode())  # a killed run never released it; it has expired
    plain = tmp_path / "plain.yaml"
    plain.write_text(_quick_config(tmp_path))
    schedule = load_schedule(_schedule(tmp_path, "s", state, str(plain)))

    summary = run_schedule(schedule, DATE)
    assert "ray@dead-pod:1" in summary["lease_took_over"] and summary["failed"] == ["m"]
    assert any("took over the expired lease" in r.getMessage() for r in caplog.records)
    assert not storage.exists(lease_uri)
    stored = storage.read_json(storage.join(state, DATE, "summary.json"))
    assert "ray@dead-pod:1" in stored["lease_took_over"]

    # a second taker of the same expired lease (its takeover object exists) is refused, not let in beside it
    storage.write_bytes(lease_uri, json.dumps({**dead, "token": "u" * 32}).encode())
    assert storage.create_exclusive(f"{lease_uri}.takeover-{'u' * 32}", b"{}")
    with pytest.raises(LeaseHeldError, match="taking over the expired lease"):
        run_schedule(schedule, DATE)

    # an unreadable lease (not ours to read) is no holder either
    storage.write_bytes(lease_uri, b'{"holder": "cut sh')
    assert run_schedule(schedule, DATE)["lease_took_over"] == "an unreadable lease"


def test_of_many_simultaneous_takers_exactly_one_gets_the_lease(tmp_path):
    uri = str(tmp_path / "state" / DATE / LEASE_FILE)
    start, results = threading.Barrier(8), []

    def take():
        start.wait()
        try:
            results.append(lease.acquire(uri, ttl_s=60, what="test"))
        except LeaseHeldError as err:
            results.append(err)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if isinstance(r, lease.Lease)]
    assert len(won) == 1 and len(results) == 8
    assert storage.read_json(uri)["token"] == won[0].token
    lease.release(won[0])
    assert not storage.exists(uri)
