"""The inspection page (mtfcdd/serving/page) in a real browser: headless Chromium, driven by selenium, against the
real server (`python -m mtfcdd.serve` on 127.0.0.1) on a checkpoint trained for the session. The page's CSV is
compared with `python -m mtfcdd.predict`'s predictions.csv for the same images on the same engine."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import shutil
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from mtfcdd.model.outputs import column_name
from mtfcdd.serving.process import ServerProcess, http_status

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
"""Debian's chromium and chromium-driver (`make browser` installs them)."""
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,900",
]
WAIT_S = 60
"""Longest wait for a page condition (a prediction on 2 shared CPU cores included)."""
SERVER_START_S = 180
"""Longest wait for the server's /health (checkpoint loading in a fresh interpreter)."""
ENGINE = "eager"
"""The engine of both the server and predict: the same float32 values."""


@contextlib.contextmanager
def serve(ckpt: Path, run_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`python -m mtfcdd.serve` on ``ckpt`` at a free port of 127.0.0.1 until the block ends; yields the page's URL
    once /health answers 200."""
    with ServerProcess([f"ckpt_path={ckpt}", f"inference={ENGINE}"], run_dir, env=env) as server:
        server.wait_ready(SERVER_START_S)
        yield server.url + "/"


@pytest.fixture(scope="module")
def ckpt(trained_run) -> Path:
    (best,) = (trained_run("max") / "checkpoints").glob("best_*.ckpt")
    return best


@pytest.fixture(scope="module")
def images(tiny_realiad: Path, tmp_path_factory) -> list[Path]:
    """Two test images of the tiny set, a defective JPEG and a normal one re-written as PNG, in one folder."""
    folder = tmp_path_factory.mktemp("page-images")
    category = tiny_realiad / "realiad_256" / "audiojack"
    defective = sorted(category.glob("NG/*/*/*.jpg"))[0]
    normal = sorted(category.glob("OK/*/*.jpg"))[0]
    shutil.copy(defective, folder / "part_ng.jpg")
    cv2.imwrite(str(folder / "part_ok.png"), cv2.imread(str(normal), cv2.IMREAD_COLOR))
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def predicted(ckpt: Path, images: list[Path], tmp_path_factory) -> tuple[list[str], dict[str, dict[str, str]]]:
    """`python -m mtfcdd.predict` on the same images and engine: its CSV header and rows by file name."""
    out = tmp_path_factory.mktemp("page-predict")
    command = [
        sys.executable,
        "-m",
        "mtfcdd.predict",
        f"ckpt_path={ckpt}",
        f"input={images[0].parent}",
        f"inference={ENGINE}",
        "trainer=cpu",
        "num_workers=0",
        "save_overlays=false",
        f"hydra.run.dir={out / 'run'}",
        f"paths.log_dir={out / 'logs'}",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return _read_csv((out / "run" / "predictions.csv").read_text())


def _read_csv(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return header, {Path(row[0]).name: dict(zip(header, row)) for row in reader}


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("page-downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path, tmp_path_factory) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile; downloads go to ``downloads`` without asking."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(ckpt: Path, tmp_path_factory) -> Iterator[str]:
    with serve(ckpt, tmp_path_factory.mktemp("page-server")) as url:
        yield url


def _wait(driver: WebDriver, condition, message: str):
    """Wait for `condition`; the table re-renders its rows as answers arrive, so an element read while it is
    replaced is read again on the next poll."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), message
    )


def _open(driver: WebDriver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "false", "page load")


def _attrs(driver: WebDriver, selector: str, name: str) -> list[str | None]:
    """Attribute `name` of every element matching `selector`, read in one script (one snapshot of the page)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.getAttribute(arguments[1]))", selector, name
    )


def _row_attrs(driver: WebDriver, name: str) -> list[str | None]:
    return _attrs(driver, "#results-body tr", name)


def _upload(driver: WebDriver, files: list[Path]) -> None:
    driver.find_element(By.ID, "file-input").send_keys("\n".join(str(f) for f in files))
    _wait(driver, lambda d: _row_attrs(d, "data-status") == ["done"] * len(files), f"{len(files)} predicted rows")


def _anomalous(driver: WebDriver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#results-body tr'),"
        " r => [r.getAttribute('data-path'), r.getAttribute('data-anomalous')]))"
    )


def _download_csv(driver: WebDriver, downloads: Path) -> str:
    for old in downloads.iterdir():
        old.unlink()
    driver.find_element(By.ID, "download-csv").click()
    target = downloads / "predictions.csv"
    _wait(driver, lambda d: target.exists() and not list(downloads.glob("*.crdownload")), "the CSV download")
    return target.read_text()


def _info(url: str, key: str | None = None) -> dict:
    request = urllib.request.Request(url + "info", headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _assert_matches_predict(page_csv: str, predicted) -> None:
    """The page's CSV equals predict's: same header, a row per image (matched by file name: predict writes the
        path it read, the page the uploaded file's name), scores within 1e-6 (relative or absolute: the server's batches
    reassociate float32 sums, a few ulps) written as Python writes floats, and the
        same decisions, anomalous flag and predicted type."""
    header, expected = predicted
    page_header, rows = _read_csv(page_csv)
    assert page_header == header
    assert sorted(rows) == sorted(expected)
    for name, row in rows.items():
        for column in header[1:]:
            got, want = row[column], expected[name][column]
            if column.startswith("score_") or column == "anomaly_score":
                assert repr(float(got)) == got, f"{column}: {got!r} is not written as Python writes a float"
                assert math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6), (name, column, got, want)
            else:
                assert got == want, (name, column, got, want)


def test_page_predicts_toggles_rethresholds_and_writes_predicts_csv(browser, server, images, predicted, downloads):
    driver = browser
    _open(driver, server)
    info = _info(server)
    assert driver.find_element(By.ID, "model-name").text == info["model"]
    assert driver.find_element(By.ID, "engine").text == info["engine"]
    chips = driver.find_elements(By.CSS_SELECTOR, "#type-chips [data-type]")
    assert [c.get_attribute("data-type") for c in chips] == [t["name"] for t in info["types"]]

    # two images, one request each: two rows, two cards with their overlays drawn
    _upload(driver, images)
    assert sorted(_anomalous(driver)) == [p.name for p in images]
    assert len(driver.find_elements(By.CSS_SELECTOR, ".card[data-status='done'] canvas.main-view")) == 2

    # at the calibrated thresholds the CSV is predict's, and the rows say what predict decided
    _assert_matches_predict(_download_csv(driver, downloads), predicted)
    _, expected = predicted
    assert _anomalous(driver) == {n: str(r["anomalous"] == "1").lower() for n, r in expected.items()}

    # toggling the type with the hottest heatmap of the first card takes its overlay off the view, and back
    peaks = driver.execute_script(
        "const item = window.mtfcdd.state.items[0];"
        "return Object.fromEntries(window.mtfcdd.state.types.map(t => [t.name, item.layers[t.name].peak]));"
    )
    hottest = max(peaks, key=peaks.get)
    assert peaks[hottest] > 0
    view = driver.find_element(By.CSS_SELECTOR, ".card[data-item='1'] canvas.main-view")
    before = driver.execute_script("return arguments[0].toDataURL()", view)
    toggle = driver.find_element(By.ID, f"layer-{column_name(hottest)}")
    toggle.click()
    _wait(driver, lambda d: hottest not in view.get_attribute("data-layers").split(","), "the layer off")
    assert driver.execute_script("return arguments[0].toDataURL()", view) != before
    toggle.click()
    _wait(driver, lambda d: hottest in view.get_attribute("data-layers").split(","), "the layer on")
    assert driver.execute_script("return arguments[0].toDataURL()", view) == before

    # the any-defect threshold at 0 flags every image, at its slider's top none; reset brings predict's back
    slider = driver.find_element(By.ID, "threshold-any_defect")
    slider.send_keys(Keys.HOME)
    _wait(driver, lambda d: set(_anomalous(d).values()) == {"true"}, "every image defective at threshold 0")
    assert {r["anomalous"] for r in _read_csv(_download_csv(driver, downloads))[1].values()} == {"1"}
    slider.send_keys(Keys.END)
    _wait(driver, lambda d: set(_anomalous(d).values()) == {"false"}, "no image defective at the top")
    first = info["types"][0]["name"]
    driver.find_element(By.ID, f"threshold-{column_name(first)}").send_keys(Keys.HOME)
    cells = f"#results-body td[data-col='score_{column_name(first)}']"
    _wait(
        driver,
        lambda d: set(_attrs(d, cells, "data-decided")) == {"true"},
        f"every image flagged {first} at threshold 0",
    )
    driver.find_element(By.ID, "reset-thresholds").click()
    _wait(
        driver,
        lambda d: _anomalous(d) == {n: str(r["anomalous"] == "1").lower() for n, r in expected.items()},
        "the calibrated decisions back",
    )
    _assert_matches_predict(_download_csv(driver, downloads), predicted)

    # sorted by the any-defect score (highest first); a typed any-defect threshold between the two scores, then
    # filtered by decision: the table and the CSV keep the image below it
    driver.find_element(By.CSS_SELECTOR, "th[data-sort='anomaly_score']").click()
    high, low = sorted(expected, key=lambda n: -float(expected[n]["anomaly_score"]))
    _wait(driver, lambda d: _row_attrs(d, "data-path") == [high, low], "rows by score")
    box = driver.find_element(By.ID, "threshold-any_defect-value")
    box.clear()
    middle = (float(expected[high]["anomaly_score"]) + float(expected[low]["anomaly_score"])) / 2
    box.send_keys(repr(middle), Keys.ENTER)
    _wait(driver, lambda d: _anomalous(d) == {high: "true", low: "false"}, "one image each side of the threshold")
    driver.find_element(By.CSS_SELECTOR, "#filter-decision option[value='ok']").click()
    _wait(driver, lambda d: _row_attrs(d, "data-path") == [low], "only the OK row")
    cards = driver.find_elements(By.CSS_SELECTOR, ".card")
    assert [c.get_attribute("data-path") for c in cards if c.is_displayed()] == [low], "the cards follow the filter"
    (row,) = _read_csv(_download_csv(driver, downloads))[1].values()
    assert (Path(row["path"]).name, row["anomalous"]) == (low, "0")
    driver.find_element(By.CSS_SELECTOR, "#filter-decision option[value='defective']").click()
    _wait(driver, lambda d: _row_attrs(d, "data-path") == [high], "only the defective row")


def test_page_writes_numbers_as_python_does(browser, server):
    """The CSV's number format (Python's repr of a float) on values across the whole double range."""
    _open(browser, server)
    rng = random.Random(0)
    values = [
        0.0,
        -0.0,
        1.0,
        0.1,
        1e-4,
        9.999e-5,
        1e-5,
        1.5e16,
        1e16,
        9999999999999998.0,
        1e22,
        5e-324,
        1.7976931348623157e308,
    ]
    values += [struct.unpack("<f", struct.pack("<f", rng.uniform(0, 3)))[0] for _ in range(200)]  # float32 scores
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20) for _ in range(300)]
    written = browser.execute_script("return arguments[0].map(v => window.mtfcdd.pyFloat(v))", values)
    assert written == [repr(v) for v in values]


def test_page_asks_for_the_api_key_and_sends_it(browser, ckpt, images, tmp_path_factory):
    key = "page-test-key"
    with serve(ckpt, tmp_path_factory.mktemp("page-key-server"), env={"MTFCDD_API_KEY": key}) as url:
        assert http_status(url + "info") == 401
        browser.get(url)
        dialog = _wait(browser, lambda d: d.find_element(By.ID, "api-key-dialog"), "the key dialog")
        _wait(browser, lambda d: dialog.get_attribute("open") is not None, "the key dialog open")
        box = browser.find_element(By.ID, "api-key-input")
        box.send_keys("wrong-key", Keys.ENTER)
        error = browser.find_element(By.ID, "api-key-error")
        _wait(browser, lambda d: error.is_displayed(), "the rejected-key message")
        box.send_keys(key, Keys.ENTER)
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "ready")
        assert dialog.get_attribute("open") is None
        assert browser.execute_script("return sessionStorage.getItem('mtfcdd-api-key')") == key
        assert browser.find_element(By.ID, "model-name").text == _info(url, key)["model"]
        _upload(browser, images[:1])
