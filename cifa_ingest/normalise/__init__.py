"""Normalising: the preservation master and the access copy from one decode of the source, the
format policy that chooses the master's action, the frame-by-frame proof, and the MediaConch
check. One module per concern, so that a reader finds each choice where it is made:

- ``encode``: the entry point (``normalise_work``, ``normalise_group``): the one ffmpeg run that
  makes every output, built from the modules below;
- ``format_policy``: which action (FFV1, remux, keep) for which source;
- ``master``: the master's options (FFV1 or remux) and its size estimated before encoding;
- ``audio``: the master's lossless audio codec (FLAC, WavPack, PCM), its layout, depth and trim;
- ``pixel_formats``: the pixel formats FFV1 holds, and a source's it holds in another;
- ``kept_metadata``: what the master keeps as tags or track names that its format cannot carry;
- ``side_data``: the sources' side data, and HDR metadata written into the master;
- ``attached_pictures``: cover art as the master's attachments;
- ``streams``: which streams of the sources the master holds, and in which order;
- ``access``: the access copy, the poster and the contact sheet;
- ``subtitles``: subtitles as WebVTT, embedded or received;
- ``master_hashes``: the master decoded for its proof, beside its encode where it can be;
- ``proof``: the frame hashes compared, and the proof's record;
- ``fidelity``: what the master keeps of its sources, and the check of the master file;
- ``run_limits``: an ffmpeg run's time limit and progress, from the film's duration;
- ``results``: what normalisation made, as preserve writes it into the bag's records;
- ``mediaconch``: the master checked against the archive's MediaConch policy.
"""
