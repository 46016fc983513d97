"""The Python side of the bindings test: the enroll -> offline edit -> sync flow against a
real lotse-server, typed errors, and the listener. Run by tests/bindings/run.sh."""

import asyncio
import json
import os
import tempfile
import threading
import time
import urllib.request

import pytest

import lotse_core as lc

URL = os.environ["LOTSE_TEST_URL"]
TOKEN = os.environ["LOTSE_TEST_TOKEN"]
VOLUNTEER = os.environ["LOTSE_TEST_VOLUNTEER"]


def api(method, path):
    req = urllib.request.Request(URL + path, method=method, headers={"authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def enrollment_code():
    status, body = api("POST", f"/api/v1/volunteers/{VOLUNTEER}/enrollment-codes")
    assert status == 201, body
    return body["code"]


def open_client(directory, seed=1):
    key = bytes((i * 7 + seed) % 256 for i in range(32))
    return lc.LotseClient.open(lc.LotseConfig(data_dir=directory, server_url=URL, key=key))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def test_enroll_offline_edit_then_sync(tmp_path):
    client = open_client(str(tmp_path))
    enrolled = run(client.enroll(enrollment_code(), "Fairphone (Python-Test)"))
    assert enrolled.volunteer_id == VOLUNTEER
    run(client.sync_now())
    client.set_network_available(False)
    case_id = client.create_case(lc.NewCaseRecord(label="P.Y.", topic=lc.CaseTopic.GESUNDHEIT, languages=["ti"]))
    note = client.add_note(case_id, "Kinderarzt, Impfpass mitbringen")
    client.edit_note(case_id, note, "Kinderarzt: Impfpass mitbringen")
    client.add_appointment(case_id, lc.NewAppointmentRecord(
        start_ms=1_772_616_600_000, end_ms=1_772_620_200_000, place="Praxis am Markt", purpose="U-Untersuchung"))
    client.log_hours(case_id, lc.NewHoursRecord(date="2026-03-04", minutes=45, travel_minutes=10, kind="begleitung"))
    assert client.case_sync_status(case_id) == lc.DocSyncStatus.PENDING()
    client.set_network_available(True)
    run(client.sync_now())
    assert client.case_sync_status(case_id) == lc.DocSyncStatus.SYNCED()
    # The sync renewed the lease: the cases stay readable for the server's 30 days.
    lease = client.check_lease()
    assert isinstance(lease, lc.LeaseRecord.UNTIL), lease
    assert lease.until_ms > int(time.time() * 1000) + 29 * 24 * 3_600_000
    status, case = api("GET", f"/api/v1/cases/{case_id}")
    assert status == 200
    assert [n["text"] for n in case["notes"]] == ["Kinderarzt: Impfpass mitbringen"]
    assert case["appointments"][0]["place"] == "Praxis am Markt"
    assert case["hours"][0]["minutes"] == 45
    week = client.appointments_between(1_772_600_000_000, 1_773_200_000_000)
    # Other tests' phones belong to the same volunteer, so their cases may show up too.
    mine = [a for a in week if a.case_id == case_id]
    assert [a.appointment.place for a in mine] == ["Praxis am Markt"]
    client.shutdown()


def test_bad_input_gives_typed_errors(tmp_path):
    client = open_client(str(tmp_path))
    run(client.enroll(enrollment_code(), "Python-Fehler"))
    client.set_network_available(False)
    case_id = client.create_case(lc.NewCaseRecord(label="E.R.", topic=lc.CaseTopic.WOHNEN, languages=[]))
    with pytest.raises(lc.LotseError.InvalidInput) as err:
        client.add_note(case_id, "   ")
    assert err.value.field == "text"
    with pytest.raises(lc.LotseError.InvalidInput):
        client.add_note(case_id, "x" * 100_001)
    with pytest.raises(lc.LotseError.InvalidInput):
        client.get_case("nonsense")
    with pytest.raises(lc.LotseError.NotFound):
        client.get_case("4NMNnkMhL8jXrdJ9jamS58PAVdXu")
    with pytest.raises(lc.LotseError.InvalidInput):
        client.add_appointment(case_id, lc.NewAppointmentRecord(start_ms=-1, end_ms=0, place="", purpose=""))
    with pytest.raises(lc.LotseError.InvalidInput):
        client.log_hours(case_id, lc.NewHoursRecord(date="2026-13-01", minutes=10, travel_minutes=0, kind="x"))
    with pytest.raises(lc.LotseError.InvalidInput):
        client.monthly_hours(65535)
    client.shutdown()
    with pytest.raises(lc.LotseError.Closed):
        client.list_cases()
    with pytest.raises(lc.LotseError.WrongKey):
        open_client(str(tmp_path), seed=2)


def test_listener_hears_the_current_state(tmp_path):
    client = open_client(str(tmp_path))
    got = threading.Event()
    states = []

    class Listener(lc.SyncListener):
        def on_sync_state(self, state):
            states.append(state)
            got.set()

        def on_documents_changed(self, ids):
            pass

        def on_case_deleted(self, id):
            pass

    handle = client.subscribe(Listener())
    assert got.wait(10)
    assert states[0] == lc.SyncStateRecord.OFFLINE()
    assert client.check_lease() == lc.LeaseRecord.NO_LEASE()
    handle.cancel()
    client.shutdown()
