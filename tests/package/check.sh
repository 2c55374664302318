#!/usr/bin/env bash
# Builds the .deb and the .rpm and proves what an operator gets: the scripts that run as root
# are clean to ShellCheck, the man page follows the build cargo uses, lintian finds no error
# (and every warning or note is explained in Cargo.toml), `dpkg -i` installs exactly the
# expected files and grants nothing, `acceptq --once` runs as nobody, `man acceptq` names every
# flag `--help` lists, bash completes `--for` to `--format`, the acceptq-setcap opt-in locks the
# binary to its group and lets a member (and collectd, through the snippet) name root's
# listeners, a reinstall and an upgrade keep that choice, the textfile unit and the drop-ins
# still start acceptq with every capability, acceptq-setcap refuses paths and records it must
# not trust, and `dpkg --purge` leaves no file behind. Then `rpm -qlp` lists the same files.
#
# Run as root on a Debian machine (CI: .ci/run, after the test suite), from anywhere:
#   tests/package/check.sh
# Needs cargo-deb, cargo-generate-rpm, lintian, rpm, man-db, bash-completion, libcap2-bin,
# util-linux (setpriv), python3, shellcheck, and prometheus-node-exporter (its textfile
# directory, as Debian lays it out). Refuses to run where an acceptq package or /usr/bin/acceptq
# already exists, since it installs and purges its own.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "== $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root: it installs and purges the package"
if dpkg-query -W -f '${Status}' acceptq 2>/dev/null | grep -q 'installed'; then
    fail "an acceptq package is installed here; this check installs and purges its own"
fi
[ ! -e /usr/bin/acceptq ] || fail "/usr/bin/acceptq exists (packaging/install.sh?): remove it first"

cleanup=()
on_exit() {
    local c
    for c in "${cleanup[@]}"; do eval "$c" || true; done
}
trap on_exit EXIT
work=$(mktemp -d /tmp/acceptq-package.XXXXXX)
cleanup+=("rm -rf '$work'")
cleanup+=("dpkg --purge acceptq >/dev/null 2>&1")
# The package creates the group acceptq and a purge leaves it (packaging/debian/postrm says
# why); this check removes it again when it was not there before.
if ! getent group acceptq >/dev/null; then
    cleanup+=("getent group acceptq >/dev/null && groupdel acceptq")
fi

step "shellcheck"
# What runs as root on the operator's machine, and this check.
shellcheck -S warning packaging/acceptq-setcap packaging/install.sh packaging/debian/postinst \
    packaging/debian/postrm tests/package/check.sh
shellcheck -S warning -s sh packaging/rpm/*.sh

step "cargo deb"
deb=$(cargo deb | tail -n 1)
[ -f "$deb" ] || fail "cargo deb printed no package path (got: $deb)"
echo "$deb"

step "a build cargo takes from its cache keeps its own man page"
# build.rs copies the page to one directory that every build of the profile shares. Build
# another version of this tree, then this one, then the other again: cargo takes the last from
# its cache without running build.rs, and the page must still be that version's.
mkdir "$work/src"
# -m: new time stamps, so cargo cannot take the copy for a tree it built before (its builds
# of a package do not depend on the package's path).
tar --exclude=./target --exclude=./.git -cf - . | tar -C "$work/src" -xmf -
metadata=$(cargo metadata --format-version 1 --no-deps)
target=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' <<<"$metadata")
version=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])' <<<"$metadata")
build_as() { # VERSION: a debug build of the copy, as that version
    sed -i "s/^version = \".*\"/version = \"$1\"/" "$work/src/Cargo.toml"
    (cd "$work/src" && CARGO_TARGET_DIR="$target" cargo check --quiet --bin acceptq)
    grep -q "^\.TH .*\"acceptq $1\"" "$target/debug/generated/acceptq.1" ||
        fail "after a build of $1: $(grep '^\.TH' "$target/debug/generated/acceptq.1")"
}
build_as 0.0.1-other
build_as "$version"
build_as 0.0.1-other

step "lintian"
# lintian's own exit status is 0 with warnings; errors are the ones that fail.
lintian --info --display-info --pedantic --tag-display-limit 0 "$deb" >"$work/lintian" 2>&1 || true
cat "$work/lintian"
if grep -q '^E: ' "$work/lintian"; then
    fail "lintian reports errors"
fi
# Every warning's, note's and pedantic tag must be explained next to the metadata, or fixed.
for tag in $(sed -n 's/^[WIP]: [^ ]*: \([^ ]*\).*/\1/p' "$work/lintian" | sort -u); do
    grep -q "lintian: $tag" Cargo.toml ||
        fail "lintian tag $tag is neither fixed nor explained in Cargo.toml (# lintian: $tag ...)"
done

# What the package must install: one place for both package formats, $1 = deb or rpm.
expected_files() {
    local zsh=/usr/share/zsh/vendor-completions units=/lib/systemd/system
    [ "$1" = rpm ] && zsh=/usr/share/zsh/site-functions units=/usr/lib/systemd/system
    echo /usr/bin/acceptq
    echo /usr/sbin/acceptq-setcap
    # build.rs gzips acceptq(1); cargo-deb gzips the other page, rpm leaves it as it is.
    echo /usr/share/man/man1/acceptq.1.gz
    if [ "$1" = deb ]; then
        echo /usr/share/man/man8/acceptq-setcap.8.gz
        echo /usr/share/doc/acceptq/copyright
        echo /usr/share/doc/acceptq/changelog.Debian.gz
    else
        echo /usr/share/man/man8/acceptq-setcap.8
        echo /usr/share/licenses/acceptq/LICENSE-MIT
        echo /usr/share/licenses/acceptq/LICENSE-APACHE
    fi
    echo /usr/share/doc/acceptq/README.md
    echo /usr/share/bash-completion/completions/acceptq
    echo "$zsh/_acceptq"
    echo /usr/share/fish/vendor_completions.d/acceptq.fish
    echo "$units/acceptq-textfile.service"
    # Every snippet, dashboard and rule file of the tree, whatever conf/ holds when packaged.
    (cd conf && find . -type f) | sed 's|^\./|/usr/share/acceptq/|'
    (cd packaging/systemd && find . -type f) | sed 's|^\./|/usr/share/acceptq/systemd/|'
    # The ones the issue names, so a glob that matches nothing cannot pass unnoticed.
    printf '/usr/share/acceptq/%s\n' collectd.conf telegraf.conf telegraf-exec.conf \
        systemd/telegraf.service.d/acceptq-capabilities.conf \
        systemd/collectd.service.d/acceptq-capabilities.conf
}

step "dpkg -i"
dpkg -i "$deb"
dpkg -L acceptq | sort -u >"$work/listed"
# Only files: dpkg -L also lists the directories the package shares with others.
while read -r path; do
    [ -d "$path" ] || echo "$path"
done <"$work/listed" >"$work/files"
expected_files deb | sort -u >"$work/expected"
if ! diff -u "$work/expected" "$work/files"; then
    fail "the .deb installs other files than expected (- expected, + installed)"
fi
while read -r path; do
    [ -f "$path" ] || fail "$path is listed by dpkg but absent (a dpkg path-exclude?)"
done <"$work/files"
grep -q '^/etc' "$work/listed" && fail "the package installs under /etc: nothing may be enabled by installing"
# Least privilege by default: nothing granted, the unit not enabled.
[ "$(stat -c '%U:%G %a' /usr/bin/acceptq)" = "root:root 755" ] ||
    fail "/usr/bin/acceptq is $(stat -c '%U:%G %a' /usr/bin/acceptq) after install"
[ -z "$(getcap /usr/bin/acceptq)" ] || fail "capabilities granted by installing: $(getcap /usr/bin/acceptq)"
if find /etc/systemd -name 'acceptq*' 2>/dev/null | grep -q .; then
    fail "installing enabled a unit: $(find /etc/systemd -name 'acceptq*')"
fi
getent group acceptq >/dev/null || fail "the package did not create the group acceptq"

step "systemd units"
unit=/lib/systemd/system/acceptq-textfile.service
# "-": a textfile directory that does not exist (yet) must not fail the unit.
grep -q '^ReadWritePaths=-/' "$unit" || fail "$unit: ReadWritePaths= without the - prefix"
systemd-analyze verify --man=no "$unit" >"$work/verify" 2>&1 || true
[ ! -s "$work/verify" ] || fail "systemd-analyze verify $unit: $(cat "$work/verify")"
# The sandbox, as systemd scores it (0 to 100, lower is tighter; 41 when this was written).
systemd-analyze security --offline=true --threshold=50 --no-pager "$unit" >"$work/security" 2>&1 ||
    fail "systemd-analyze security $unit: $(tail -n 1 "$work/security")"
# Each drop-in, applied to a stand-in for the agent's unit.
for dropin in /usr/share/acceptq/systemd/*.service.d/*.conf; do
    service=$(basename "$(dirname "$dropin")" .d)
    mkdir -p "$work/units/$service.d"
    printf '[Service]\nExecStart=/bin/true\n' >"$work/units/$service"
    cp "$dropin" "$work/units/$service.d/"
    systemd-analyze verify --man=no "$work/units/$service" >"$work/verify" 2>&1 || true
    [ ! -s "$work/verify" ] || fail "systemd-analyze verify $dropin: $(cat "$work/verify")"
done

# setpriv makes its own execve still holding root's effective capabilities (it keeps them to
# apply its options), and CAP_DAC_OVERRIDE passes any file with an x bit: the permission check
# that matters is made by an unprivileged shell's exec.
as_user() { # SETPRIV-GROUPS-OPTION COMMAND...
    local groups=$1
    shift
    setpriv --reuid=nobody --regid=nogroup "$groups" /bin/sh -c 'exec "$@"' sh "$@"
}
nobody=(as_user --clear-groups)
# What the kernel sees when systemd starts COMMAND for UNIT (a unit, or a drop-in on a stock
# agent unit): its User=, Group=, SupplementaryGroups= plus EXTRA-GROUPS, AmbientCapabilities=,
# CapabilityBoundingSet= and NoNewPrivileges=, set by setpriv (systemd is not PID 1 on every CI
# machine). A User= this machine lacks (telegraf, collectd) is played by nobody.
as_unit() { # UNIT EXTRA-GROUPS COMMAND...
    local unit=$1 extra=$2 user group groups ambient bounding
    shift 2
    setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
    # "CAP_A CAP_B" as setpriv writes it: "+a,+b".
    caps() { tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_\(.*\)/+\1/p' | paste -sd, -; }
    user=$(setting User)
    getent passwd "${user:-nobody}" >/dev/null || user=nobody
    group=$(setting Group)
    getent group "${group:-x}" >/dev/null || group=$(id -gn "${user:-nobody}")
    groups=$(echo "$(setting SupplementaryGroups) $extra" | tr -s ' ' ',' | sed 's/^,//; s/,$//')
    local args=(--reuid="${user:-nobody}" --regid="$group" "--groups=${groups:-$group}")
    ambient=$(setting AmbientCapabilities | caps)
    [ -z "$ambient" ] || args+=(--inh-caps="-all,$ambient" --ambient-caps="-all,$ambient")
    bounding=$(setting CapabilityBoundingSet | caps)
    [ -z "$bounding" ] || args+=(--bounding-set="-all,$bounding")
    [ "$(setting NoNewPrivileges)" != yes ] || args+=(--no-new-privs)
    setpriv "${args[@]}" /bin/sh -c 'exec "$@"' sh "$@"
}
step "acceptq --once as nobody"
"${nobody[@]}" /usr/bin/acceptq --once >"$work/once" 2>"$work/once.err" ||
    fail "acceptq --once as nobody failed: $(cat "$work/once.err")"
grep -q '^acceptq_netns' "$work/once" || fail "no acceptq_netns line: $(cat "$work/once")"

step "man acceptq names every flag of --help"
# No hyphenation, ASCII hyphens, no overstrike: the flags as typed.
LC_ALL=C MANWIDTH=250 MANROFFOPT=-rHY=0 man -P cat acceptq 2>"$work/man.err" |
    sed 's/.\x08//g' >"$work/man"
[ ! -s "$work/man.err" ] || fail "man acceptq warned: $(cat "$work/man.err")"
grep -q '^ACCEPTQ CHECK OPTIONS' "$work/man" || fail "man acceptq has no section for acceptq check"
grep -q '^ACCEPTQ TOP OPTIONS' "$work/man" || fail "man acceptq has no section for acceptq top"
flags=0
for cmd in "" check top; do
    # shellcheck disable=SC2086 # no command is no argument
    /usr/bin/acceptq $cmd --help >"$work/help"
    for flag in $(grep -oE '(^|[ ,])--?[a-zA-Z][a-z-]*' "$work/help" | grep -oE -- '--?[a-zA-Z][a-z-]*' | sort -u); do
        grep -qE -- "(^|[^a-z-])$flag([^a-z-]|\$)" "$work/man" ||
            fail "man acceptq does not mention $flag (from acceptq $cmd --help)"
        flags=$((flags + 1))
    done
done
[ "$flags" -gt 30 ] || fail "only $flags flags found in --help: the flag pattern is broken"
echo "$flags flags, each in the man page"

step "bash completes --for to --format, and a command's own flags"
complete_words() { # WORD... : what bash-completion offers for the last word
    bash --norc --noprofile -c '
        . /usr/share/bash-completion/bash_completion
        _completion_loader acceptq
        spec=$(complete -p acceptq) || exit 1
        fn=$(printf "%s\n" "$spec" | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
        COMP_WORDS=(acceptq "$@")
        COMP_CWORD=$#
        COMP_LINE="acceptq $*"
        COMP_POINT=${#COMP_LINE}
        "$fn" acceptq "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"
    ' sh "$@" || fail "bash-completion did not load a completion for acceptq"
}
completion=$(complete_words --for)
[ "$completion" = "--format" ] || fail "bash completes --for to: ${completion:-nothing}"
completion=$(complete_words check --dur)
[ "$completion" = "--duration" ] || fail "bash completes check --dur to: ${completion:-nothing}"

step "acceptq-setcap --process-names"
# A root-owned listener on loopback: nobody's acceptq sees it, but not whose it is.
python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(300)
' >"$work/port" &
listener=$!
cleanup+=("kill $listener 2>/dev/null")
for _ in $(seq 50); do
    [ -s "$work/port" ] && break
    sleep 0.1
done
port=$(cat "$work/port")
[ -n "$port" ] || fail "the python3 listener did not start"
gid=$(getent group acceptq | cut -d: -f3)
member=(as_user --groups="$gid")
process_of() { # the process tag acceptq reports for $port, run by "$@"
    "$@" /usr/bin/acceptq --once --format json --no-syn-queue --port "$port" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m["name"] == "acceptq_listener":
        print(m["tags"].get("process", "-"))
'
}
before=$(process_of "${member[@]}")
[ "$before" = "-" ] || fail "without capabilities, nobody sees root's listener as: $before"

acceptq-setcap --process-names
[ "$(stat -c '%U:%G %a' /usr/bin/acceptq)" = "root:acceptq 750" ] ||
    fail "after acceptq-setcap: $(stat -c '%U:%G %a' /usr/bin/acceptq)"
getcap /usr/bin/acceptq | grep -q 'cap_dac_read_search,cap_sys_ptrace=ep' ||
    fail "capabilities after acceptq-setcap: $(getcap /usr/bin/acceptq)"
if "${nobody[@]}" /usr/bin/acceptq --version >"$work/denied" 2>&1; then
    fail "nobody, not in the group, can still run acceptq"
fi
grep -q 'Permission denied' "$work/denied" || fail "nobody's refusal: $(cat "$work/denied")"
after=$(process_of "${member[@]}")
[ "$after" = python3 ] || fail "a member of acceptq sees root's listener as: ${after:-no row}"

step "collectd runs the locked binary with the installed snippet, and it names processes"
# The real collectd, as root like its stock unit: the exec plugin switches to nobody with the
# group acceptq, which alone may execute the binary now.
mkdir "$work/collectd"
cat >"$work/collectd/collectd.conf" <<EOF
Hostname "package"
FQDNLookup false
BaseDir "$work/collectd"
PIDFile "$work/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$work/collectd/log"
</Plugin>
LoadPlugin csv
<Plugin csv>
  DataDir "$work/collectd/csv"
</Plugin>
Include "/usr/share/acceptq/collectd.conf"
EOF
timeout 30 collectd -f -C "$work/collectd/collectd.conf" >"$work/collectd/out" 2>&1 &
collectd=$!
cleanup+=("kill $collectd 2>/dev/null")
values="$work/collectd/csv/package/acceptq-127.0.0.1-$port"
for _ in $(seq 150); do
    [ -n "$(ls "$values" 2>/dev/null)" ] && break
    sleep 0.1
done
sleep 1.5
kill "$collectd"
wait "$collectd" || true
[ -n "$(ls "$values" 2>/dev/null)" ] ||
    fail "collectd wrote no values for port $port: $(cat "$work/collectd/log" "$work/collectd/out")"
if grep -q 'cannot read /proc/<pid>/fd' "$work/collectd/log"; then
    fail "acceptq under collectd cannot name processes: $(grep 'cannot read' "$work/collectd/log")"
fi

step "a reinstall keeps the administrator's choice"
dpkg -i "$deb" >/dev/null
[ "$(stat -c '%U:%G %a' /usr/bin/acceptq)" = "root:acceptq 750" ] ||
    fail "after reinstalling: $(stat -c '%U:%G %a' /usr/bin/acceptq)"
getcap /usr/bin/acceptq | grep -q 'cap_dac_read_search,cap_sys_ptrace=ep' ||
    fail "capabilities after reinstalling: $(getcap /usr/bin/acceptq)"

step "an upgrade to a newer version keeps the administrator's choice"
# The same files under a later version: dpkg runs the upgrade path (the old package's prerm and
# postrm "upgrade", the new one's postinst "configure OLD-VERSION").
dpkg-deb -R "$deb" "$work/next"
sed -i 's/^Version: .*/&+next/' "$work/next/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/next" "$work/next.deb" >/dev/null
dpkg -i "$work/next.deb" >/dev/null
dpkg-query -W -f '${Version}' acceptq | grep -q '+next$' || fail "the upgrade was not installed"
[ "$(stat -c '%U:%G %a' /usr/bin/acceptq)" = "root:acceptq 750" ] ||
    fail "after upgrading: $(stat -c '%U:%G %a' /usr/bin/acceptq)"
getcap /usr/bin/acceptq | grep -q 'cap_dac_read_search,cap_sys_ptrace=ep' ||
    fail "capabilities after upgrading: $(getcap /usr/bin/acceptq)"

step "acceptq-setcap --remove, then both features"
acceptq-setcap --remove >/dev/null
[ "$(stat -c '%U:%G %a' /usr/bin/acceptq)" = "root:root 755" ] ||
    fail "after acceptq-setcap --remove: $(stat -c '%U:%G %a' /usr/bin/acceptq)"
[ -z "$(getcap /usr/bin/acceptq)" ] || fail "--remove left $(getcap /usr/bin/acceptq)"
[ ! -e /var/lib/acceptq/setcap ] || fail "--remove left /var/lib/acceptq/setcap"
acceptq-setcap --process-names --namespaces >/dev/null
getcap /usr/bin/acceptq | grep -q 'cap_dac_read_search,cap_sys_ptrace,cap_sys_admin=ep' ||
    fail "capabilities for both features: $(getcap /usr/bin/acceptq)"
if acceptq-setcap >/dev/null 2>&1; then
    fail "acceptq-setcap without a feature succeeded"
fi

step "the textfile unit and the drop-ins still start acceptq once it has every capability"
# The kernel refuses to execute a binary whose file capabilities exceed the caller's bounding
# set: a unit or drop-in that narrows it would stop acceptq (and, for a drop-in, every other
# program the agent runs with file capabilities) after acceptq-setcap --namespaces.
for file in "$unit" /usr/share/acceptq/systemd/*.service.d/*.conf; do
    # The drop-ins' agents are told to join the group acceptq (the README, the snippets).
    as_unit "$file" acceptq /usr/bin/acceptq --version >"$work/unit-run" 2>&1 ||
        fail "with the credentials of $file, acceptq does not start: $(cat "$work/unit-run")"
done

step "acceptq-textfile.service writes into Debian's textfile directory"
textdir=/var/lib/prometheus/node-exporter
[ -d "$textdir" ] || fail "$textdir is missing: install prometheus-node-exporter"
# The one-time step the unit's comment gives, run as written there.
override=$(sed -n 's/^#   \(dpkg-statoverride --update --add [^ ]* [^ ]* [0-7]* \/[^ ]*\)$/\1/p' "$unit")
[ -n "$override" ] || fail "$unit does not say how to let its User= write $textdir"
if ! dpkg-statoverride --list "$textdir" >/dev/null; then
    cleanup+=("dpkg-statoverride --remove '$textdir'; chown $(stat -c '%u:%g' "$textdir") '$textdir'; chmod $(stat -c '%a' "$textdir") '$textdir'")
    read -ra override <<<"$override"
    "${override[@]}"
fi
[ ! -e "$textdir/acceptq.prom" ] || fail "$textdir/acceptq.prom exists already"
cleanup+=("rm -f '$textdir/acceptq.prom'")
read -ra exec_start <<<"$(sed -n 's/^ExecStart=//p' "$unit")"
timeout 20 bash -c "$(declare -f as_unit); as_unit \"\$@\"" sh "$unit" "" "${exec_start[@]}" \
    2>"$work/textfile.err" &
textfile=$!
for _ in $(seq 100); do
    [ -s "$textdir/acceptq.prom" ] && break
    kill -0 "$textfile" 2>/dev/null || break
    sleep 0.1
done
kill "$textfile" 2>/dev/null || true
wait "$textfile" 2>/dev/null || true
[ -s "$textdir/acceptq.prom" ] ||
    fail "acceptq-textfile.service wrote no $textdir/acceptq.prom: $(cat "$work/textfile.err")"
grep -q "^acceptq_listener_queue_depth{.*port=\"$port\",process=\"python3\"}" "$textdir/acceptq.prom" ||
    fail "the textfile unit does not name root's listener's process: $(grep "port=\"$port\"" "$textdir/acceptq.prom")"

step "acceptq-setcap refuses a link, another user's file, a forged record; says what no xattrs means"
acceptq-setcap --remove >/dev/null
# A link to nobody's file: chown and chmod would follow it (setcap itself refuses links).
hostile=$(mktemp -d /tmp/acceptq-hostile.XXXXXX)
cleanup+=("rm -rf '$hostile'")
cp /usr/bin/acceptq "$hostile/acceptq"
chown -R nobody: "$hostile"
mv /usr/bin/acceptq "$work/acceptq.packaged"
ln -s "$hostile/acceptq" /usr/bin/acceptq
if acceptq-setcap --process-names >"$work/refused" 2>&1; then
    fail "acceptq-setcap followed /usr/bin/acceptq -> $hostile/acceptq"
fi
grep -q 'symbolic link' "$work/refused" || fail "refusing a link: $(cat "$work/refused")"
[ "$(stat -c '%U %a' "$hostile/acceptq")" = "nobody 755" ] ||
    fail "acceptq-setcap changed the link's target: $(stat -c '%U:%G %a' "$hostile/acceptq")"
rm /usr/bin/acceptq
cp -p "$hostile/acceptq" /usr/bin/acceptq
if acceptq-setcap --process-names >"$work/refused" 2>&1; then
    fail "acceptq-setcap gave capabilities to a /usr/bin/acceptq owned by nobody"
fi
grep -q 'not owned by root' "$work/refused" || fail "refusing nobody's file: $(cat "$work/refused")"
mv -f "$work/acceptq.packaged" /usr/bin/acceptq
# --reapply runs as root from the package's post-install step: it grants only the features'
# capabilities, whatever the record says.
mkdir -p /var/lib/acceptq
echo "acceptq cap_setuid" >/var/lib/acceptq/setcap
if acceptq-setcap --reapply >"$work/refused" 2>&1; then
    fail "acceptq-setcap --reapply applied a record naming cap_setuid: $(getcap /usr/bin/acceptq)"
fi
[ -z "$(getcap /usr/bin/acceptq)" ] || fail "a forged record granted $(getcap /usr/bin/acceptq)"
rm /var/lib/acceptq/setcap
if acceptq-setcap --process-names --group -x >"$work/refused" 2>&1; then
    fail "acceptq-setcap took -x for a group"
fi
# A filesystem without extended attributes (ramfs), in a mount namespace of its own.
if unshare -m sh -ec 'd=$(mktemp -d); mount -t ramfs none "$d"; cp -p /usr/bin/acceptq "$d/";
        mount --bind "$d/acceptq" /usr/bin/acceptq; acceptq-setcap --process-names' \
    >"$work/refused" 2>&1; then
    fail "acceptq-setcap succeeded on ramfs"
fi
grep -q 'extended attributes' "$work/refused" || fail "setcap on ramfs: $(cat "$work/refused")"
[ ! -e /var/lib/acceptq/setcap ] || fail "a failed acceptq-setcap recorded its choice"

step "dpkg --purge removes every installed file"
dpkg --purge acceptq
while read -r path; do
    if [ -d "$path" ]; then
        # Gone, or still someone else's: another package's, or holding others' files.
        if dpkg-query -S "$path" >/dev/null 2>&1 || [ -n "$(ls -A "$path")" ]; then
            continue
        fi
        fail "purge left the empty directory $path"
    fi
    [ ! -e "$path" ] || fail "purge left $path"
done <"$work/listed"
for dir in /usr/share/acceptq /usr/share/doc/acceptq /var/lib/acceptq; do
    [ ! -e "$dir" ] || fail "purge left $dir"
done
echo "purged; the group acceptq stays by design (packaging/debian/postrm)"

step "cargo generate-rpm"
cargo generate-rpm -o "$work/"
rpm=$(find "$work" -name 'acceptq-*.rpm')
[ -f "$rpm" ] || fail "cargo generate-rpm wrote no .rpm"
rpm -qlp "$rpm" 2>/dev/null | sort -u >"$work/rpm-files"
expected_files rpm | sort -u >"$work/rpm-expected"
if ! diff -u "$work/rpm-expected" "$work/rpm-files"; then
    fail "the .rpm carries other files than expected (- expected, + in the package)"
fi
rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'groupadd --system acceptq' ||
    fail "the .rpm's post-install step does not create the group acceptq"
echo "$(wc -l <"$work/rpm-files") files in $(basename "$rpm")"
step "package checks passed"
