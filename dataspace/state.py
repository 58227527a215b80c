"""The DSP 2025-1 state machines, as tables (spec: contract.negotiation.protocol.md and
transfer.process.protocol.md, their state-machine figures).

Each entry says which message, sent by whom (C consumer, P provider), moves a process from
which states to which; anything else is an invalid transition, answered with a 400 ERROR.
The same table serves both sides: the provider checks what the consumer sends, the
consumer what the provider sends, and each side checks what it is about to send itself.
"""

from __future__ import annotations

from .errors import InvalidTransition

NEGOTIATION_STATES = ("REQUESTED", "OFFERED", "ACCEPTED", "AGREED", "VERIFIED", "FINALIZED", "TERMINATED")
TRANSFER_STATES = ("REQUESTED", "STARTED", "SUSPENDED", "COMPLETED", "TERMINATED")
FINAL = {"FINALIZED", "TERMINATED", "COMPLETED"}

# (message, sender) -> (states it may arrive in, resulting state)
NEGOTIATION: dict[tuple[str, str], tuple[frozenset, str]] = {
    ("ContractRequestMessage", "C"): (frozenset({"OFFERED"}), "REQUESTED"),
    ("ContractOfferMessage", "P"): (frozenset({"REQUESTED"}), "OFFERED"),
    ("ACCEPTED", "C"): (frozenset({"OFFERED"}), "ACCEPTED"),
    ("ContractAgreementMessage", "P"): (frozenset({"REQUESTED", "ACCEPTED"}), "AGREED"),
    ("ContractAgreementVerificationMessage", "C"): (frozenset({"AGREED"}), "VERIFIED"),
    ("FINALIZED", "P"): (frozenset({"VERIFIED"}), "FINALIZED"),
    ("ContractNegotiationTerminationMessage", "C"): (frozenset({"REQUESTED", "OFFERED", "AGREED"}), "TERMINATED"),
    ("ContractNegotiationTerminationMessage", "P"): (frozenset({"REQUESTED", "OFFERED", "ACCEPTED", "VERIFIED"}),
                                                     "TERMINATED"),
}

TRANSFER: dict[tuple[str, str], tuple[frozenset, str]] = {
    ("TransferStartMessage", "P"): (frozenset({"REQUESTED", "SUSPENDED"}), "STARTED"),
    ("TransferStartMessage", "C"): (frozenset({"SUSPENDED"}), "STARTED"),
    ("TransferSuspensionMessage", "P"): (frozenset({"STARTED"}), "SUSPENDED"),
    ("TransferSuspensionMessage", "C"): (frozenset({"STARTED"}), "SUSPENDED"),
    ("TransferCompletionMessage", "P"): (frozenset({"STARTED"}), "COMPLETED"),
    ("TransferCompletionMessage", "C"): (frozenset({"STARTED"}), "COMPLETED"),
    ("TransferTerminationMessage", "P"): (frozenset({"REQUESTED", "STARTED", "SUSPENDED"}), "TERMINATED"),
    ("TransferTerminationMessage", "C"): (frozenset({"REQUESTED", "STARTED", "SUSPENDED"}), "TERMINATED"),
}


def _next(table: dict, kind: str, current: str, message: str, sender: str) -> str:
    entry = table.get((message, sender))
    who = "consumer" if sender == "C" else "provider"
    if entry is None:
        raise InvalidTransition(f"a {who} does not send {message} in a {kind}")
    allowed, result = entry
    if current not in allowed:
        raise InvalidTransition(f"{message} from the {who} is not allowed in state {current} "
                                f"(only in {', '.join(sorted(allowed))})")
    return result


def negotiation_next(current: str, message: str, sender: str) -> str:
    return _next(NEGOTIATION, "contract negotiation", current, message, sender)


def transfer_next(current: str, message: str, sender: str) -> str:
    return _next(TRANSFER, "transfer process", current, message, sender)
