"""Fetching: the film's bytes exactly as the source sends them, which addresses may be contacted,
and how failures are classified.

- :mod:`~cifa_ingest.fetch.ytdlp`: driving yt-dlp (its options, the two phases, retries):
  ``fetch_work``, ``fetch_source``, ``probe_source``;
- :mod:`~cifa_ingest.fetch.capture`: the records of a capture (``Capture``, ``FetchedSource``,
  ``ReceivedFile``, ``HttpExchange``) and what identifies a source video (``SourceKey``);
- :mod:`~cifa_ingest.fetch.failures`: why a fetch failed (``FetchErrorKind``, ``classify``);
- :mod:`~cifa_ingest.fetch.source_policy`: which addresses the archive may contact;
- :mod:`~cifa_ingest.fetch.request_policy`: that policy on every request and redirect yt-dlp
  makes, and the size limit of a page;
- :mod:`~cifa_ingest.fetch.signin`: signed-in access (a host's cookies, YouTube's PO token),
  kept out of every record;
- :mod:`~cifa_ingest.fetch.ytdlp_internals`: the one use of yt-dlp's private code, and why.
"""
