"""The one runner for every external program (ffmpeg, ffprobe, MediaConch, MediaInfo): timeouts,
logged command lines, return codes checked.
"""
