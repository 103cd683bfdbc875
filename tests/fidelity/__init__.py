"""The independent fidelity test: odd sources of the kinds archives receive (:mod:`.corpus`),
and a checker that compares a master with its source using only ffprobe, ffmpeg and MediaInfo
(:mod:`.checker`), never the pipeline's own code."""
