"""MkDocs hook: the repository's CHANGELOG.md, SECURITY.md and LICENSE as pages of the site.

They are read from the repository's root at every build, never copied into docs/, so the site
cannot drift from them. Standard MkDocs (1.6's ``File.generated``): no plugin to install.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: page in the site -> (file in the repository's root, whether it is plain text)
PAGES = {
    "changelog.md": ("CHANGELOG.md", False),
    "security.md": ("SECURITY.md", False),
    "license.md": ("LICENSE", True),
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = Path(config.config_file_path).parent
    for page, (name, plain) in PAGES.items():
        text = (root / name).read_text(encoding="utf-8")
        if plain:
            text = f"# {name.title()}\n\n```text\n{text.rstrip()}\n```\n"
        files.append(File.generated(config, page, content=text))
    return files
