"""The committed page template that keeps `dvc plots show` off the network."""

import configparser
from pathlib import Path

from prunelab.report import offline

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_uses_the_offline_template_and_it_loads_nothing_from_outside():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert config["plots"]["html_template"] == "plots/offline.html"
    page = (ROOT / offline.TEMPLATE).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC puts its CDN tags in {scripts}
    assert "<script src" not in page and 'src="http' not in page
    for name, _ in offline.LIBRARIES:
        assert f"/* {name}-" in page
    assert (ROOT / offline.LICENSES).read_text().count("== vega") == 3


def test_template_is_rebuilt_from_unpacked_packages(tmp_path):
    for name, rel in offline.LIBRARIES:
        lib = tmp_path / f"{name}-9.9.9" / rel
        lib.parent.mkdir(parents=True)
        lib.write_text(f"var {name.replace('-', '_')} = {{x: 1}};")
    page, licences = offline.build(tmp_path)
    assert "var vega_lite = {x: 1};" in page and page.count("<script") == 3 and "{plot_divs}" in page
    assert "BSD-3-Clause" in licences
