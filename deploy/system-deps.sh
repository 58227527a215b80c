#!/usr/bin/env bash
# What the test suite needs from the operating system, installed when missing (Debian, as root);
# `make test` runs this first, so the README's test command alone passes on a fresh machine.
#   postgresql                 the ledger's PostgreSQL tests start a throwaway server (initdb)
#   chromium, chromium-driver  the dashboard's browser test (Selenium); a CJK font for its screenshots
#   default-jre-headless, maven  Apache Kafka, the production engine (fetched through deploy/kafka/pom.xml)
#   kcat                       reads a delivery topic with a consumer's credentials (tests/deploy)
# Without root or apt-get a missing piece fails here, naming it: the suite never skips it.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium fonts-wqy-microhei)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v kcat >/dev/null || missing+=(kcat)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "the test suite needs these Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
