"""Build the page template that makes `dvc plots show` render without the internet.

DVC writes `dvc_plots/index.html` with `<script src>` tags pointing at a CDN, inserted
through the `{scripts}` placeholder of its page template. Our template
(`.dvc/plots/offline.html`, set as `plots.html_template` in `.dvc/config`) has no such
placeholder: it carries vega, vega-lite and vega-embed inline, so the page DVC writes is
self-contained. The template is committed; rebuild it after upgrading the libraries:

    cd "$(mktemp -d)" && npm pack vega@5 vega-lite@5 vega-embed@6 \\
        && for f in *.tgz; do tar xzf "$f" && mv package "${f%.tgz}"; done
    uv run python -m prunelab.report.offline "$PWD"        # run from the repository root

The versions are the major versions DVC's own templates are written for.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from prunelab import atomic
from prunelab.errors import PrunelabError

TEMPLATE = Path(".dvc") / "plots" / "offline.html"
LICENSES = Path(".dvc") / "plots" / "VEGA-LICENSES.txt"
LIBRARIES = (
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
)

HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots (offline)</title>
    <!-- NOTICE. DVC's CDN script tags go where its default template has a scripts
         placeholder; this one has none. Built by `python -m prunelab.report.offline`. -->
"""
TAIL = """    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def package_folder(root: Path, name: str) -> Path:
    """The unpacked npm package ``name`` under ``root`` (``<name>-<version>``, as `npm pack` names it)."""
    found = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(rf"{re.escape(name)}-\d[\w.]*", p.name))
    if not found:
        raise PrunelabError(
            f"{root}: no unpacked {name}-<version>/ folder (see `python -m prunelab.report.offline -h`)"
        )
    return found[-1]


def build(root: Path) -> tuple[str, str]:
    """The template and the licence file from the unpacked packages under ``root``."""
    scripts, notices, licences = [], [], []
    for name, rel in LIBRARIES:
        folder = package_folder(root, name)
        code = (folder / rel).read_text(encoding="utf-8")
        if "</script" in code:
            raise PrunelabError(f"{folder / rel} contains '</script': it cannot be inlined as is")
        scripts.append(f'    <script type="text/javascript">/* {folder.name} */\n{code}\n    </script>')
        notices.append(f"{folder.name} (BSD-3-Clause)")
        licence = folder / "LICENSE"
        text = (
            licence.read_text(encoding="utf-8")
            if licence.exists()
            else (
                "BSD-3-Clause, as its package.json declares (the npm package ships no LICENSE file); "
                "same terms as the two below.\n"
            )
        )
        licences.append(f"== {folder.name} ==\n{text}")
    notice = f"Inlined: {', '.join(notices)}; licences in .dvc/plots/VEGA-LICENSES.txt."
    return HEAD.replace("NOTICE.", notice) + "\n".join(scripts) + "\n" + TAIL, "\n".join(licences)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prunelab.report.offline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("packages", type=Path, help="folder holding the unpacked vega, vega-lite, vega-embed")
    args = parser.parse_args()
    page, licences = build(args.packages)
    atomic.write_text(TEMPLATE, page)
    atomic.write_text(LICENSES, licences)
    print(f"wrote {TEMPLATE} ({len(page) / 1e6:.2f} MB) and {LICENSES}")


if __name__ == "__main__":
    from prunelab import cli

    cli.run(main)
