"""A bag's life as PREMIS events: the objects and events recorded in its ``metadata/premis.xml``
(capture, message digest calculation, normalization, validation, ingestion …) followed by every
fixity check the audit log holds for it, as PREMIS ``fixity check`` events, then the preservation
events of its copies that repair recorded in the audit log's second chain (``fixity check`` of
one copy, ``replication`` of a file to a copy, ``recovery`` of a copy), each naming the copy
(``primary`` or a location) in its detail: what happened to the bag after ingest is part of its
history, from the same hash-chained record as the audits. ``cifa events ID``
prints it; the document validates against the PREMIS 3.0 schema like the bag's own. With
``--json`` it prints the same events as JSON objects (:func:`as_dict`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType, PreservationEvent
from cifa_ingest.archive.ledger import CheckOutcome
from cifa_ingest.metadata import premis


def bag_events(bag_dir: Path, log: AuditLog, work_id: str) -> ET.Element:
    """A PREMIS document of the bag's events and fixity checks, with the agents they name."""
    ET.register_namespace("premis", premis.PREMIS_NS)
    ET.register_namespace("xsi", premis.XSI_NS)
    recorded = ET.parse(bag_dir / "metadata" / "premis.xml").getroot()
    root = ET.Element(premis._q("premis"), {"version": "3.0"})
    for element in recorded.findall(premis._q("object")):  # the schema wants the objects first
        root.append(element)
    for event in recorded.findall(premis._q("event")):
        root.append(event)
    payload = [
        p.relative_to(bag_dir).as_posix()
        for p in sorted((bag_dir / "data").rglob("*"))
        if p.is_file()
    ]
    auditors: dict[str, premis.Agent] = {}
    for check in log.history(work_id):
        name, version = premis.split_tool(check.software, "cifa-ingest")
        agent = auditors.setdefault(check.software, premis.Agent(name, "software", version))
        kinds = sorted({str(p.get("kind")) for p in check.problems})
        premis._event(
            root,
            premis.Event(
                type="fixity check",
                date_time=check.checked_at,
                detail=f"every file re-read and re-hashed: {check.bytes_read} bytes"
                f" in {check.seconds:.1f} s",
                outcome="pass" if check.outcome is CheckOutcome.INTACT else "fail",
                outcome_detail=", ".join(kinds) if kinds else None,
                agents=[(agent, "executing program")],
                objects=[(path, "source") for path in payload],
            ),
        )
    for happened in log.events(work_id):
        name, version = premis.split_tool(happened.software, "cifa-ingest")
        agent = auditors.setdefault(happened.software, premis.Agent(name, "software", version))
        premis._event(root, _preservation_event(happened, agent))
    known = set()
    for element in recorded.findall(premis._q("agent")):
        root.append(element)
        value = element.find(f"{premis._q('agentIdentifier')}/{premis._q('agentIdentifierValue')}")
        known.add(value.text if value is not None else None)
    for agent in auditors.values():
        if agent.identifier not in known:
            premis._agent(root, agent)
    return root


def _preservation_event(event: PreservationEvent, agent: premis.Agent) -> premis.Event:
    """One event of the audit log's second chain as PREMIS: its detail says which copy, and what
    was found or done; the files it names are its objects (the source of a check, the outcome of
    a copy made)."""
    detail = event.detail
    where = f"the copy at {event.location}"
    if event.event_type is EventType.REPLICATION:
        text = f"{detail.get('path')} copied from the copy at {detail.get('source')} to {where},"
        text += " verified against the ledger's sha256" if "sha256" in detail else ""
        objects = [(str(detail.get("path")), "outcome")]
    else:
        missing, damaged = detail.get("missing", []), detail.get("damaged", [])
        verb = (
            "every file re-read and re-hashed against the ledger's digests"
            if event.event_type is EventType.FIXITY_CHECK
            else f"files found missing or damaged replaced ({detail.get('repaired', 0)})"
        )
        text = f"{where}: {verb}: {len(missing)} missing, {len(damaged)} damaged"
        objects = [(path, "source") for path in [*missing, *damaged]]
    outcome_detail = detail.get("error") or ", ".join(
        f"{word}: {', '.join(detail[word])}" for word in ("missing", "damaged") if detail.get(word)
    )
    return premis.Event(
        type=str(event.event_type),
        date_time=event.event_at,
        detail=text,
        outcome="success" if event.outcome is EventOutcome.SUCCESS else "failure",
        outcome_detail=outcome_detail or None,
        agents=[(agent, "executing program")],
        objects=objects,
    )


def to_bytes(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find("/".join(premis._q(name) for name in path.split("/")))
    return found.text if found is not None else None


def _links(event: ET.Element, kind: str) -> list[tuple[str | None, list[str]]]:
    """An event's linking agent or object identifiers, each with its roles."""
    return [
        (
            _text(link, f"linking{kind}IdentifierValue"),
            [role.text or "" for role in link.findall(premis._q(f"linking{kind}Role"))],
        )
        for link in event.findall(premis._q(f"linking{kind}Identifier"))
    ]


def as_dict(root: ET.Element) -> dict[str, Any]:
    """:func:`bag_events`'s document as JSON-ready data: ``{"events": [{"identifier", "type",
    "date_time", "detail", "outcome", "outcome_detail", "agents": [{"identifier", "name", "type",
    "version", "roles"}], "objects": [{"identifier", "roles"}]}]}``, in the document's order."""
    unknown = {"name": None, "type": None, "version": None}
    agents = {}
    for agent in root.findall(premis._q("agent")):
        identifier = _text(agent, "agentIdentifier/agentIdentifierValue")
        agents[identifier] = {
            "name": _text(agent, "agentName"),
            "type": _text(agent, "agentType"),
            "version": _text(agent, "agentVersion"),
        }
    events = []
    for event in root.findall(premis._q("event")):
        events.append(
            {
                "identifier": _text(event, "eventIdentifier/eventIdentifierValue"),
                "type": _text(event, "eventType"),
                "date_time": _text(event, "eventDateTime"),
                "detail": _text(event, "eventDetailInformation/eventDetail"),
                "outcome": _text(event, "eventOutcomeInformation/eventOutcome"),
                "outcome_detail": _text(
                    event, "eventOutcomeInformation/eventOutcomeDetail/eventOutcomeDetailNote"
                ),
                "agents": [
                    {"identifier": identifier, **agents.get(identifier, unknown), "roles": roles}
                    for identifier, roles in _links(event, "Agent")
                ],
                "objects": [
                    {"identifier": identifier, "roles": roles}
                    for identifier, roles in _links(event, "Object")
                ],
            }
        )
    return {"events": events}
