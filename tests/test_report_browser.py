"""The HTML report renders in headless Chromium: the page is not blank and no image is broken.

Every <img> is a base64 PNG: Python decodes each one, and Chromium reports naturalWidth for
each (a copy of the page gets a small inline script that writes it into the DOM, read back
with --dump-dom). Skipped only when /usr/bin/chromium is absent.
"""
import base64
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.config import load_config
from edge.report import make_reports
from test_report import make_fake

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                              "(make system-packages installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MARK_IMAGES = """<script>
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    imgs[i].setAttribute("data-natural-width", String(imgs[i].naturalWidth));
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++;
  }
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken", String(broken));
});
</script>"""


def _chromium(tmp_path, *args, timeout=60):
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    cfg = make_fake(tmp, streaming=True, emulated=True, per_step=True)
    make_reports(load_config(cfg), progress=None)
    return tmp / "reports" / "tiny" / "report.html"


def test_screenshot_not_blank(report_html, tmp_path):
    from PIL import Image
    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,3000", report_html.as_uri())
    assert shot.is_file(), f"no screenshot: {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (3000, 1400)
    assert img.std() > 20, f"screenshot looks blank (pixel std {img.std():.1f})"
    # ink in the top, the middle and the lower part of the page (text, tables, figures)
    for band in (img[:1000], img[1000:2000], img[2000:]):
        assert (band < 128).mean() > 0.002


def test_no_broken_images(report_html, tmp_path):
    from PIL import Image
    page = report_html.read_text()
    srcs = re.findall(r'<img[^>]*\bsrc="([^"]*)"', page)
    assert len(srcs) >= 5
    for src in srcs:                                     # Python: every image decodes as PNG
        assert src.startswith("data:image/png;base64,"), src[:60]
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        im.load()
    probe = tmp_path / "probe.html"                      # Chromium: every image decodes and renders
    probe.write_text(page.replace("</body>", MARK_IMAGES + "</body>"))
    proc = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri())
    dom = proc.stdout
    m = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken="(\d+)"', dom)
    assert m, f"the probe script did not run: {proc.stderr[-2000:]}"
    assert int(m.group(1)) == len(srcs) and int(m.group(2)) == 0
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == len(srcs) and min(widths) > 100
