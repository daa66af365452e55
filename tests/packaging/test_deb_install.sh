#!/usr/bin/env bash
# Install test of a meterpipe .deb in a clean Debian 12 root made with mmdebstrap (chroot, as
# root): install, files in place, conffile, user and groups, unit enabled and verified, the
# shipped config passes check-config and keeps the service from starting (saying what to
# edit), the installed `meterpipe run` finds its workers in /usr/lib/meterpipe, upgrade to a
# newer build keeps an edited config and the state, remove keeps them, purge deletes them.
# Also the security score of the shipped unit (fails above 2.5).
#   tests/packaging/test_deb_install.sh dist/meterpipe_<version>_amd64.deb
# MP_DEBROOT_CACHE: directory for downloaded .debs kept between runs (default build-deb/cache)
set -uo pipefail
deb=$(realpath "${1:?usage: test_deb_install.sh PACKAGE.deb}")
here=$(cd "$(dirname "$0")" && pwd)
cache=${MP_DEBROOT_CACHE:-$here/../../build-deb/cache}
mkdir -p "$cache"
cache=$(realpath "$cache")
pass=0 fail=0
check() { # check "what" command...
  local what=$1
  shift
  if "$@" >/tmp/mpdeb.check.$$ 2>&1; then
    pass=$((pass + 1)); echo "ok   $what"
  else
    fail=$((fail + 1)); echo "FAIL $what: $(head -c 1500 /tmp/mpdeb.check.$$)"
  fi
}
[[ $(id -u) -eq 0 ]] || { echo "FAIL test_deb_install.sh needs root (chroot)"; exit 1; }
command -v mmdebstrap >/dev/null || { echo "FAIL mmdebstrap missing (scripts/setup --cross)"; exit 1; }

root=$(mktemp -d /tmp/mpdebroot.XXXXXX)
cleanup() {
  umount -R "$root/proc" 2>/dev/null
  umount -R "$root/dev" 2>/dev/null
  rm -rf --one-file-system "$root"
  rm -f /tmp/mpdeb.check.$$
}
trap cleanup EXIT
in_root() { chroot "$root" "$@"; }

t0=$(date +%s)
# minbase + apt: the smallest root that can install a .deb with its dependencies
if ! mmdebstrap --quiet --variant=apt \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $cache /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $cache" \
  --skip=essential/unlink --skip=cleanup/apt/lists \
  bookworm "$root" >/tmp/mpdeb.mm.$$ 2>&1; then
  echo "FAIL mmdebstrap bookworm: $(tail -n 20 /tmp/mpdeb.mm.$$)"
  exit 1
fi
echo "     clean Debian 12 root in $(($(date +%s) - t0)) s"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp "$deb" "$root/tmp/meterpipe.deb"

# --- install
check "apt-get install the .deb in a clean root" \
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/meterpipe.deb
((fail == 0)) || { echo "$pass passed, $fail failed"; exit 1; }
for f in /usr/bin/meterpipe /usr/lib/meterpipe/meterpipe-{acquire,process,actuate,upload,serve,remote,mqtt,history} \
  /usr/lib/meterpipe/libmeterpipe-core.so /usr/lib/meterpipe/meterpipe-configured /lib/systemd/system/meterpipe.service \
  /usr/lib/sysusers.d/meterpipe.conf /etc/meterpipe/meterpipe.toml \
  /usr/share/man/man1/meterpipe.1.gz /usr/share/meterpipe/meterpipe.example.toml \
  /usr/share/meterpipe/grafana/meterpipe.json /usr/share/meterpipe/examples/tap_readings.py \
  /usr/share/meterpipe/meterpipe.proto /usr/share/doc/meterpipe/copyright; do
  check "installed: $f" test -e "$root$f"
done
check "/etc/meterpipe/meterpipe.toml is a conffile" \
  sh -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' meterpipe | grep -q ' /etc/meterpipe/meterpipe.toml '"
check "user meterpipe exists, no login shell, home /var/lib/meterpipe" \
  sh -c "chroot '$root' getent passwd meterpipe | grep -E ':/var/lib/meterpipe:/(usr/)?s?bin/nologin$'"
check "user meterpipe is in group dialout" sh -c "chroot '$root' id -nG meterpipe | grep -qw dialout"
check "no gpio group created where there was none" sh -c "! chroot '$root' getent group gpio"
check "the unit is enabled (multi-user.target.wants)" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/meterpipe.service"
check "systemd-analyze verify of the installed unit" \
  sh -c "out=\$(chroot '$root' systemd-analyze verify --man=no /lib/systemd/system/meterpipe.service 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
check "meterpipe check-config on the shipped config" \
  in_root meterpipe check-config /etc/meterpipe/meterpipe.toml
check "the shipped config is not started: ExecCondition says which file and line to edit" \
  sh -c "out=\$(chroot '$root' /usr/lib/meterpipe/meterpipe-configured /etc/meterpipe/meterpipe.toml); rc=\$?; echo \"\$out\"; [ \$rc = 1 ] && echo \"\$out\" | grep -q 'Edit it: at least line [0-9][0-9]*, the device of the \[\[meter\]\]'"
check "man meterpipe renders" sh -c "zcat '$root/usr/share/man/man1/meterpipe.1.gz' | grep -q '^\.SH COMMANDS'"

# --- the installed `meterpipe run` finds its workers in /usr/lib/meterpipe (as user meterpipe)
cat >"$root/tmp/sim.toml" <<'TOML'
[general]
run_dir = "/tmp/mprun"
state_dir = "/tmp/mpstate"
[[meter]]
name = "home"
source = "simulate"
[upload]
target = "file"
TOML
chmod 0644 "$root/tmp/sim.toml"
# chroot itself in the background (not the in_root function, whose subshell would get the
# signal): chroot and setpriv exec, so $! is the supervisor
chroot "$root" setpriv --reuid=meterpipe --regid=meterpipe --init-groups \
  meterpipe run -c /tmp/sim.toml >/tmp/mpdeb.run.$$ 2>&1 &
runpid=$!
running() {
  chroot "$root" setpriv --reuid=meterpipe --regid=meterpipe --init-groups \
    meterpipe status --json --run-dir /tmp/mprun 2>/dev/null |
    python3 2>/dev/null -c 'import json,sys; s=json.load(sys.stdin); w=s["workers"]; sys.exit(0 if w and all(x["state"]=="running" and x["last_health_age_s"] is not None for x in w) else 1)'
}
ok=1
for _ in $(seq 1 300); do running && { ok=0; break; }; sleep 0.2; done
check "installed meterpipe run (user meterpipe) starts every worker from /usr/lib/meterpipe" \
  sh -c "[ $ok = 0 ] || { cat /tmp/mpdeb.run.$$; exit 1; }"
kill -TERM "$runpid" 2>/dev/null
wait "$runpid"
rc=$?
check "  and exits 0 on SIGTERM" sh -c "[ $rc = 0 ] || { tail /tmp/mpdeb.run.$$; exit 1; }"
rm -f /tmp/mpdeb.run.$$

# --- an edited config and some state, then an upgrade to a newer build
sed -i 's/^log_level = "info"/log_level = "debug"   # edited by the admin/' "$root/etc/meterpipe/meterpipe.toml"
mkdir -p "$root/var/lib/meterpipe/data" && echo "state" >"$root/var/lib/meterpipe/data/keep.lp"
check "the edited config is now 'configured' (ExecCondition passes)" \
  in_root /usr/lib/meterpipe/meterpipe-configured /etc/meterpipe/meterpipe.toml
old_version=$(dpkg-deb -f "$deb" Version)
new_version="$old_version+1"
rm -rf "$root/tmp/new" && dpkg-deb -R "$deb" "$root/tmp/new"
sed -i "s/^Version: .*/Version: $new_version/" "$root/tmp/new/DEBIAN/control"
dpkg-deb -b --root-owner-group "$root/tmp/new" "$root/tmp/meterpipe-new.deb" >/dev/null
check "upgrade to $new_version" \
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/meterpipe-new.deb
check "  installed version is $new_version" \
  sh -c "chroot '$root' dpkg-query -W -f='\${Version}' meterpipe | grep -qx '$new_version'"
check "  the edited config is kept" grep -q 'edited by the admin' "$root/etc/meterpipe/meterpipe.toml"
check "  the state is kept" test -s "$root/var/lib/meterpipe/data/keep.lp"

# --- remove keeps config and state, purge deletes them
check "apt-get remove" in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q meterpipe
check "  binaries gone" test ! -e "$root/usr/bin/meterpipe" -a ! -e "$root/usr/lib/meterpipe/meterpipe-acquire"
check "  config kept" grep -q 'edited by the admin' "$root/etc/meterpipe/meterpipe.toml"
check "  state kept" test -s "$root/var/lib/meterpipe/data/keep.lp"
check "dpkg --purge" in_root dpkg --purge meterpipe
check "  /etc/meterpipe gone" test ! -e "$root/etc/meterpipe"
check "  /var/lib/meterpipe gone" test ! -e "$root/var/lib/meterpipe"
check "  nothing of the package left in dpkg" sh -c "! chroot '$root' dpkg-query -W meterpipe 2>/dev/null"

# --- hardening of the shipped unit
unit=$(mktemp -d)
dpkg-deb -x "$deb" "$unit"
out=$(systemd-analyze security --offline=yes --root="$unit" meterpipe.service 2>&1)
score=$(echo "$out" | sed -n 's/.*Overall exposure level for meterpipe.service: \([0-9.]*\).*/\1/p')
rm -rf "$unit"
echo "     systemd-analyze security --offline=yes: ${score:-?} (shipped unit)"
check "security exposure ${score:-?} <= 2.5" \
  sh -c "[ -n '$score' ] && awk 'BEGIN{exit !($score <= 2.5)}' || { echo \"$out\" | tail -n 5; exit 1; }"

echo "$pass passed, $fail failed"
((fail == 0))
