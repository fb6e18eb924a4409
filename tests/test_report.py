"""The static report: built from a results folder without rerunning, and seen in a real headless browser."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mlib import report  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def png() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@pytest.fixture
def results(tmp_path) -> Path:
    """``results/demo/02_train``: an executed notebook with an inline figure, a figure, a table, provenance."""
    folder = tmp_path / "results" / "demo" / "02_train"
    folder.mkdir(parents=True)
    image = png()
    (folder / "parity.png").write_bytes(image)
    pd.DataFrame({"seed": range(20), "mae": [1e-6 * i for i in range(20)]}).to_csv(folder / "splits.csv", index=False)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train.thermal(P, run)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(image).decode()})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 02 · Train"), cell]
    nbformat.write(nb, folder / "02_train.ipynb")
    provenance = {
        "notebook": "02_train",
        "profile": "demo",
        "seed": 0,
        "finished": True,
        "wall_time_s": 90.0,
        "code": {"commit": "0123456789abcdef", "dirty": False},
        "parameters": {"epochs": 2},
        "packages": {"torch": "2.13.0"},
        "data_files": {"aflow-agl/records.jsonl": "ab" * 32},
        "outputs": [
            {"file": "parity.png", "caption": "Test parity plot, thermal expansion, demo set"},
            {"file": "splits.csv", "caption": "Test metrics per split, demo set"},
        ],
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    return tmp_path / "results"


def test_the_site_lists_every_notebook_figure_and_table_and_its_links_resolve(results, tmp_path):
    index = report.build("demo", results, tmp_path / "site")
    text = index.read_text()
    assert "Test parity plot, thermal expansion, demo set" in text and "Test metrics per split, demo set" in text
    assert (
        "first 15 of 20 rows" in text
        and "0123456789" in text
        and "01_data" in text
        and "Not run in this profile" in text
    )
    for link in re.findall(r'(?:href|src)="([^"#]+)"', text):
        assert (index.parent / link).exists(), link
    page = (index.parent / "02_train.html").read_text()
    assert "data:image/png;base64" in page  # the notebook's figures are embedded in its page


def test_a_profile_that_never_ran_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        report.main(["--profile", "nothing", "--out", str(tmp_path)])
    assert info.value.code == 2 and "make reproduce PROFILE=nothing" in capsys.readouterr().err


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them: apt-get install chromium chromium-driver)",
)
@pytest.mark.slow
def test_a_headless_browser_sees_every_image_and_follows_the_links(results, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    index = report.build("demo", results, tmp_path / "site")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(index.as_uri())
        widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths)
        browser.save_screenshot(str(tmp_path / "index.png"))
        browser.find_element(By.LINK_TEXT, "The executed notebook").click()
        assert browser.current_url.endswith("02_train.html")
        widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths)
        browser.save_screenshot(str(tmp_path / "notebook.png"))
    finally:
        browser.quit()
    assert (tmp_path / "index.png").stat().st_size > 0 and (tmp_path / "notebook.png").stat().st_size > 0
