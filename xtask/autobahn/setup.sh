#!/bin/sh
# (The team's shared Autobahn script, kept here unchanged so `cargo xtask conformance` works
# in any checkout.)
# Installs the Autobahn|Testsuite (wstest) without Docker, into one folder, touching nothing else.
# The suite runs on Python 2.7, which Debian 12 no longer ships: this takes CPython 2.7 and
# OpenSSL 1.1 from Debian 11's packages (downloaded with a private apt state, unpacked with
# dpkg -x, never installed system-wide), then installs autobahntestsuite from PyPI.
# Usage: setup.sh [DIR]   (default: $HOME/.cache/autobahn). Idempotent. Prints the wstest path.
set -eu
R=${1:-${AUTOBAHN_HOME:-$HOME/.cache/autobahn}}
mkdir -p "$R"
R=$(cd "$R" && pwd)
if [ -x "$R/wstest" ] && "$R/wstest" -a >/dev/null 2>&1; then echo "$R/wstest"; exit 0; fi
A=$R/apt
mkdir -p "$A/etc/sources.list.d" "$A/etc/preferences.d" "$A/state/lists/partial" "$A/cache/archives/partial"
# The machine's own Debian mirror (from its apt sources), asked for the older release's suites.
uris=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian(-security)?' | sort -u)
main_uri=$(echo "$uris" | grep -v -- '-security' | head -1)
sec_uri=$(echo "$uris" | grep -- '-security' | head -1)
[ -n "$main_uri" ] || { echo "autobahn: no Debian mirror found in the apt sources" >&2; exit 1; }
key=/usr/share/keyrings/debian-archive-keyring.gpg
{
  echo "deb [signed-by=$key] $main_uri bullseye main"
  [ -n "$sec_uri" ] && echo "deb [signed-by=$key] $sec_uri bullseye-security main"
} > "$A/etc/sources.list"
touch "$A/state/status"
OPTS="-o Dir::Etc::SourceList=$A/etc/sources.list -o Dir::Etc::SourceParts=$A/etc/sources.list.d \
 -o Dir::State=$A/state -o Dir::State::status=$A/state/status -o Dir::Cache=$A/cache \
 -o Dir::Etc::Preferences=$A/etc/preferences -o Dir::Etc::PreferencesParts=$A/etc/preferences.d"
echo "autobahn: downloading Python 2.7 packages" >&2
apt-get $OPTS -qq update
mkdir -p "$R/debs"
(cd "$R/debs" && apt-get $OPTS -qq download python2.7-minimal libpython2.7-minimal libpython2.7-stdlib \
  python2.7 libpython2.7 libpython2.7-dev python2.7-dev libssl1.1 libffi7)
mkdir -p "$R/py2"
for d in "$R"/debs/*.deb; do dpkg -x "$d" "$R/py2"; done
export LD_LIBRARY_PATH="$R/py2/usr/lib/x86_64-linux-gnu"
P="$R/py2/usr/bin/python2.7"
echo "autobahn: installing pip and autobahntestsuite" >&2
mkdir -p "$R/wheels"
python3 -m pip download -q --no-deps -d "$R/wheels" "pip==20.3.4" "setuptools==44.1.1" "wheel==0.37.1"
"$P" "$R/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q --no-index --find-links "$R/wheels" pip setuptools wheel
CFLAGS="-I$R/py2/usr/include -I$R/py2/usr/include/python2.7" "$P" -m pip install -q autobahntestsuite
cat > "$R/wstest" <<WRAP
#!/bin/sh
export LD_LIBRARY_PATH="$R/py2/usr/lib/x86_64-linux-gnu"
exec "$P" "$R/py2/usr/local/bin/wstest" "\$@"
WRAP
chmod +x "$R/wstest"
"$R/wstest" -a >/dev/null
echo "$R/wstest"
