"""One Stripe refund for one planned execution row: the call with the row's idempotency key,
and the look-up of the refund by its metadata whenever Stripe's memory of the key cannot be
trusted.

A key makes a repeated call safe only while Stripe remembers it: Stripe prunes keys once they
are 24 hours old and then treats a reused key as a new request. So a key first sent more than
`KEY_TRUSTED_FOR` ago is never sent again before the refund is looked up among the payment's
refunds by its metadata (case, payment, plan); found, it is recorded and nothing is sent; the
look-up failing, nothing is sent either. The same look-up settles an answer that may hide a
refund (a timeout, a replayed 500, a key Stripe says was used with other parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services import faults
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_records import StripeRefund
from services.deps import Deps
from services.refunds import ledger
from services.refunds.ledger import ExecutionStatus
from services.refunds.models import Case
from services.store import audit
from services.store.db import utcnow

RETRYABLE_KINDS = ("unavailable", "rate_limited")
KEY_TRUSTED_FOR = timedelta(hours=23)   # Stripe prunes idempotency keys after 24 hours


@dataclass(frozen=True)
class PlannedRefund:
    row_id: int
    payment_ref: str
    amount: int
    key: str
    called_at: str | None   # when the key was first sent to Stripe
    attempt: int            # the plan number, also in the key and the refund's metadata

    @property
    def called(self) -> bool:
        return self.called_at is not None


def refund_metadata(case: Case, item: PlannedRefund) -> dict[str, str]:
    """What every refund carries, so that it can be found again without its key."""
    return {"case_id": str(case.id), "booking_id": case.booking_id,
            "booking_code": case.booking_code, "payment": item.payment_ref,
            "plan": str(item.attempt)}


async def call_stripe(svc: Deps, case: Case, item: PlannedRefund) -> list[str]:
    """One Stripe refund for one planned row; returns the problems (empty when it went out)."""
    assert svc.stripe is not None
    if item.called_at is not None and \
            utcnow() - datetime.fromisoformat(item.called_at) > KEY_TRUSTED_FOR:
        try:
            found = await _find_made(svc, case, item)
        except StripeGatewayError as exc:
            return await _not_sent(svc, case, item, exc.message)
        await audit.record(svc.store, actor="worker", action="execution.key_expired",
                           case_id=case.id, detail={
                               "payment": item.payment_ref, "idempotency_key": item.key,
                               "first_sent": item.called_at,
                               "found": found.id if found else None})
        if found is not None:
            return await _record_refund(svc, case, item, found)
        # Stripe holds no refund of this plan: the first call never made one; the key, which
        # Stripe no longer remembers, is sent as a new request
    # synced to disk before the call: after any crash, the refund is known to have been asked
    # for with this key (so it is asked again with it, or looked up once the key is too old)
    async with svc.store.transaction(durable=True) as tx:
        await ledger.mark_called(tx, item.row_id)
    try:
        refund = await svc.stripe.create_refund(
            payment_ref=item.payment_ref, amount=item.amount, currency=case.currency,
            idempotency_key=item.key, metadata=refund_metadata(case, item))
    except StripeGatewayError as exc:
        doubt = exc.maybe_applied or exc.kind == "idempotency"
        found = await _made_anyway(svc, case, item) if doubt else None
        if found is None:
            return await _stripe_error(svc, case, item, exc)
        refund = found
    faults.reached("after_stripe_answered")
    return await _record_refund(svc, case, item, refund)


async def _find_made(svc: Deps, case: Case, item: PlannedRefund) -> StripeRefund | None:
    """The refund this row asked for, among the payment's refunds at Stripe: by its metadata
    (case and plan; a refund made before the plan was in the metadata, by case and amount),
    never one another row already recorded. Raises when Stripe cannot be asked."""
    assert svc.stripe is not None
    made = await svc.stripe.refunds_for(item.payment_ref)
    taken = await ledger.known_refund_ids(svc.store)

    def ours(refund: StripeRefund) -> bool:
        meta = refund.metadata
        if meta.get("case_id") != str(case.id) or refund.id in taken:
            return False
        if "plan" in meta:
            return meta["plan"] == str(item.attempt) and \
                meta.get("payment", item.payment_ref) == item.payment_ref
        return refund.amount == item.amount

    return next((r for r in made if ours(r)), None)


async def _made_anyway(svc: Deps, case: Case, item: PlannedRefund) -> StripeRefund | None:
    """After an answer that may hide a refund, look for it (None also when Stripe cannot be
    asked: the row stays planned and a retry reuses its key)."""
    try:
        return await _find_made(svc, case, item)
    except StripeGatewayError:
        return None


async def _not_sent(svc: Deps, case: Case, item: PlannedRefund, error: str) -> list[str]:
    await audit.record(svc.store, actor="worker", action="execution.key_expired",
                       case_id=case.id, detail={"payment": item.payment_ref,
                                                "idempotency_key": item.key,
                                                "first_sent": item.called_at,
                                                "lookup_error": error})
    return [f"not sent again to Stripe: {item.payment_ref} was first asked at "
            f"{item.called_at}, longer ago than Stripe keeps idempotency keys, and Stripe "
            f"could not be asked whether that refund went out ({error})"]


async def _stripe_error(svc: Deps, case: Case, item: PlannedRefund,
                        exc: StripeGatewayError) -> list[str]:
    final = exc.kind not in RETRYABLE_KINDS
    async with svc.store.transaction() as tx:
        row = next(r for r in await ledger.for_case(tx, case.id) if r.id == item.row_id)
        if row.settled:   # Stripe's event told us of the refund while we waited for an answer
            return []
        if final:
            await ledger.reject(tx, item.row_id, exc.message, only_planned=True)
        await audit.append(tx, actor="stripe", action="stripe.refund_error", case_id=case.id,
                           detail={"payment": item.payment_ref, "amount": case.money(
                               item.amount), "idempotency_key": item.key, "kind": exc.kind,
                               "error": exc.message, "will_reuse_key": not final})
    hint = "" if final else " (a retry reuses the same idempotency key)"
    return [f"Stripe refused {item.payment_ref}: {exc.message}{hint}"]


async def _record_refund(svc: Deps, case: Case, item: PlannedRefund,
                         refund: StripeRefund) -> list[str]:
    status = ledger.from_stripe(refund.status)
    async with svc.store.transaction() as tx:
        await ledger.record_outcome(tx, item.row_id, status, refund.failure_reason,
                                    refund_id=refund.id)
        await audit.append(tx, actor="stripe", action="stripe.refund", case_id=case.id, detail={
            "payment": item.payment_ref, "amount": case.money(refund.amount),
            "idempotency_key": item.key, "refund_id": refund.id, "status": refund.status})
    if status == ExecutionStatus.FAILED:
        return [f"Stripe refund {refund.id} {refund.status}: {refund.failure_reason or 'unknown'}"]
    return []
