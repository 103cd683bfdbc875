"""Metadata in the field's vocabularies: PREMIS 3, Dublin Core, and a bag's life as PREMIS
events."""
