#!/bin/sh
# Installs a release build without a package manager: /usr/bin/acceptq, acceptq-setcap, the man
# pages and the README. Like the packages it grants no capability: `acceptq-setcap` is the
# opt-in (see the README's Required capabilities). Run from the repository root after
# `cargo build --release`; prefer the .deb or .rpm (README: Packaging and install).
set -eu
install -m 755 target/release/acceptq /usr/bin/acceptq
install -m 755 packaging/acceptq-setcap /usr/sbin/acceptq-setcap
install -d /usr/share/man/man1 /usr/share/man/man8 /usr/share/doc/acceptq
install -m 644 target/release/generated/acceptq.1 /usr/share/man/man1/acceptq.1
install -m 644 packaging/acceptq-setcap.8 /usr/share/man/man8/acceptq-setcap.8
install -m 644 README.md /usr/share/doc/acceptq/README.md
# The group the collectd snippet runs acceptq with, and that acceptq-setcap limits it to.
getent group acceptq >/dev/null || groupadd --system acceptq
# The new binary arrived root:root 0755 without capabilities: apply an acceptq-setcap choice
# made before again, as the packages' post-install step does.
if [ -f /var/lib/acceptq/setcap ]; then
    /usr/sbin/acceptq-setcap --reapply
fi
echo "installed; process names of other users' listeners: sudo acceptq-setcap --process-names"
