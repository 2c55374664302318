#!/bin/sh
# Installs a release build as /usr/bin/acceptq with the capabilities that let an unprivileged
# agent (collectd runs exec programs as nobody, Telegraf as telegraf) name every listener's
# process. Run from the repository root after `cargo build --release`.
set -eu
install -m 755 target/release/acceptq /usr/bin/acceptq
if command -v setcap >/dev/null 2>&1; then
    setcap cap_dac_read_search,cap_sys_ptrace+ep /usr/bin/acceptq
else
    echo "setcap not found (Debian: apt-get install libcap2-bin): process names only for the agent's own user" >&2
fi
install -d /usr/share/doc/acceptq
install -m 644 README.md /usr/share/doc/acceptq/README.md
