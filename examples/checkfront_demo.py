"""Start the Checkfront stand-in, read a booking snapshot, cancel it and leave a note.

Run: python -m examples.checkfront_demo
"""

from __future__ import annotations

import asyncio
import json

from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import serving
from services.checkfront import CheckfrontClient


async def main() -> None:
    sandbox = CheckfrontSandbox("cf_demo_key", "cf_demo_secret", currency="CAD")
    sandbox.add_booking(
        code="DEMO-010126",
        status="PAID",
        items=[
            {"sku": "paddle", "name": "Paddle rental", "total": "6.30", "tax": "0.30", "qty": 2},
            {"sku": "tour", "name": "Harbour tour", "total": "42.00", "tax": "2.00", "qty": 2},
        ],
        transactions=[{"transaction_id": "pi_demo", "status": "PAID", "amount": "48.30"}],
    )
    async with (
        serving(sandbox.app()) as server,
        CheckfrontClient(server.url, "cf_demo_key", "cf_demo_secret") as client,
    ):
        snapshot = await client.get_booking_snapshot("DEMO-010126")
        print(json.dumps(snapshot["booking"]["order"], indent=2))
        await client.update_status("DEMO-010126", "STOP")
        await client.add_note("DEMO-010126", "Cancelled by the refund bot demo.")
    print("status now:", sandbox.status_of("DEMO-010126"))
    print("notes:", [n.body for n in sandbox.notes("DEMO-010126")])


if __name__ == "__main__":
    asyncio.run(main())
