#!/usr/bin/python3
"""serve's page (issue 8) in headless Chromium, after `meterpipe relay boiler off`: it shows the
last reading's net power, a chart with points, a live WebSocket and the relay off; screenshots
go to MP_BUILD_DIR/artifacts/serve.png and serve-phone.png. Pipeline: mptest_serve.Serve.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mptest  # noqa: E402
from mptest import wait_for  # noqa: E402
import mptest_serve  # noqa: E402
from mptest_serve import BUILD_DIR, chromium, close_enough, tap_net  # noqa: E402

ck = mptest.Checker(handle_signals=False, max_detail=800)
check = ck.check


def test_page(s):
    cfg = s.cfg
    tap, port = s.tap, s.port
    # --- switch the relay off, so that the page has a switch to show
    r = mptest.run_cli(["relay", "boiler", "off", "--for", "10m", "-c", cfg], timeout=10)
    check(r.returncode == 0, "meterpipe relay boiler off", r.stderr)
    check(wait_for(lambda: [tm for _, tm in tap.relays()
                            if not tm["envelope"]["relay"].get("new_state")], 5),
          "the relay-off event is on the bus")

    # --- the page in headless Chromium
    url = "http://127.0.0.1:%d/" % port
    before = max(tm["seq"] for _, tm in tap.readings())
    r, err = chromium(["--window-size=1200,1000", "--virtual-time-budget=5000", "--dump-dom"],
                      url)
    after = max(tm["seq"] for _, tm in tap.readings())
    if check(r is not None and r.returncode == 0, "chromium --dump-dom", err):
        dom = r.stdout.decode(errors="replace")
        net = re.search(r'id="net"[^>]*data-w="([^"]*)"[^>]*data-seq="([0-9]*)"', dom)
        pts = re.search(r'id="chart"[^>]*data-points="([0-9]+)"', dom) or \
            re.search(r'data-points="([0-9]+)"[^>]*id="chart"', dom)
        shown = net and net.group(2) and tap.by_seq(int(net.group(2)))
        if check(shown, "the page shows a reading from the bus", net and net.groups()):
            seq = int(net.group(2))
            check(close_enough(float(net.group(1)), tap_net(shown)),
                  "page net power %s W equals reading %d (%s W)" %
                  (net.group(1), seq, tap_net(shown)))
            check(before <= seq <= after,
                  "it is the last reading (seq %d, bus at %d..%d while the page ran)" %
                  (seq, before, after))
        check(pts and int(pts.group(1)) > 0, "the chart has points (%s)" %
              (pts.group(1) if pts else None))
        check('name="viewport"' in dom, "viewport meta for phones")
        check("class=\"conn on\"" in dom, "the page's WebSocket is live")
        rels = re.search(r'data-relay="boiler" data-on="([a-z]+)"', dom)
        check(rels and rels.group(1) == "false", "the page shows the relay off",
              rels and rels.group(0))
    art = os.path.join(BUILD_DIR, "artifacts")
    os.makedirs(art, exist_ok=True)
    shot = os.path.join(art, "serve.png")
    if os.path.exists(shot):
        os.remove(shot)
    r, err = chromium(["--window-size=1200,1000", "--virtual-time-budget=5000",
                       "--screenshot=" + shot], url)
    check(r is not None and os.path.exists(shot) and os.path.getsize(shot) > 10000,
          "screenshot saved to %s" % shot, err)
    phone = os.path.join(art, "serve-phone.png")
    r, err = chromium(["--window-size=390,1400", "--virtual-time-budget=3000",
                       "--screenshot=" + phone], url)
    check(r is not None and os.path.exists(phone), "phone-sized screenshot " + phone, err)


if __name__ == "__main__":
    sys.exit(mptest_serve.main(ck, test_page))
