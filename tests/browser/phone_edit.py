"""A volunteer's phone on lotse-core (its Python bindings): enrolls with a code, syncs,
edits one note of a case as `text`, syncs again and exits. The browser checks use it to
edit a note at the same time as the web app. Usage:
phone_edit.py SERVER_URL ENROLLMENT_CODE CASE_ID NOTE_ID TEXT"""

import asyncio
import sys
import tempfile
import time

import lotse_core as lc


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def main(url, code, case_id, note_id, text):
    with tempfile.TemporaryDirectory() as data:
        key = bytes((i * 11 + 5) % 256 for i in range(32))
        client = lc.LotseClient.open(lc.LotseConfig(data_dir=data, server_url=url, key=key))
        run(client.enroll(code, "Telefon (lotse-core)"))
        deadline = time.time() + 20
        while True:
            run(client.sync_now())
            try:
                if any(n.id == note_id for n in client.list_notes(case_id)):
                    break
            except lc.LotseError:
                pass
            if time.time() > deadline:
                sys.exit(f"the note {note_id} never reached this phone")
            time.sleep(0.2)
        client.edit_note(case_id, note_id, text)
        run(client.sync_now())
        client.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:6])
