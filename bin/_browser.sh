# Sourced by bin/test: the dashboard test drives Debian's chromium (Playwright, no
# browser download). Install it when missing and this machine can (root with apt-get).
if ! command -v chromium > /dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
        echo "installing chromium for the dashboard test (first run only) ..." >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium > /tmp/zbroker-apt.log 2>&1; then
            apt-get update -q > /tmp/zbroker-apt.log 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >> /tmp/zbroker-apt.log 2>&1 || {
                cat /tmp/zbroker-apt.log >&2; echo "installing chromium failed (log above)" >&2; exit 1; }
        fi
    else
        echo "the dashboard test needs chromium: install Debian's package 'chromium'" >&2
    fi
fi
