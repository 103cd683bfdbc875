"""Dublin Core (``metadata/descriptive.xml``): what the film is, for catalogues that are not ours.

descriptive.json holds the catalogue's entry in our own shape; this is the same description in
simple Dublin Core, wrapped as OAI-PMH's ``oai_dc`` record, which any repository, harvester or
library catalogue reads. Titles and names are given in both languages with ``xml:lang``, so the
Chinese title is never lost to a system that only looks for "the" title.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cifa_ingest.catalogue.model import Work

OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SCHEMA_LOCATION = f"{OAI_DC_NS} http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
ET.register_namespace("oai_dc", OAI_DC_NS)
ET.register_namespace("dc", DC_NS)
ET.register_namespace("xsi", XSI_NS)


def descriptive_tree(work: Work, collection: str | None) -> ET.Element:
    """The ``oai_dc:dc`` element of a work."""
    root = ET.Element(f"{{{OAI_DC_NS}}}dc", {f"{{{XSI_NS}}}schemaLocation": SCHEMA_LOCATION})

    def add(name: str, text: str | None, lang: str | None = None) -> None:
        if text:
            element = ET.SubElement(root, f"{{{DC_NS}}}{name}", {XML_LANG: lang} if lang else {})
            element.text = text

    add("title", work.title.en, "en")
    add("title", work.title.zh, "zh")
    if work.director:
        add("creator", work.director.en, "en")
        add("creator", work.director.zh, "zh")
    add("date", str(work.year) if work.year else None)
    add("type", "MovingImage")  # the DCMI Type Vocabulary term
    add("type", work.kind, "en")
    add("description", work.synopsis, "en")
    add("identifier", work.id)
    for index, source in enumerate(work.sources, start=1):
        if work.parts is not None:
            label = source.label or f"part {index}"
            add("relation", f"{label}: {source.url}" if source.url else label)
        add("source", source.url)
    add("relation", f"isPartOf: {collection}" if collection else None)
    permission = work.permission
    rights = f"Permission {permission.status}"
    if permission.granted_by:
        rights += f" by {permission.granted_by}"
    rights += f", covering {', '.join(str(use) for use in permission.covers)}"
    if permission.date:
        rights += f", on {permission.date.isoformat()}"
    if permission.basis:
        rights += f": {permission.basis}"
    add("rights", rights, "en")
    ET.indent(root)
    return root


def descriptive_xml(work: Work, collection: str | None) -> bytes:
    """descriptive.xml's bytes (UTF-8, with the XML declaration)."""
    root = descriptive_tree(work, collection)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
