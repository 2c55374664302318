# The group that may run acceptq once acceptq-setcap has given it capabilities; re-applies an
# administrator's acceptq-setcap choice after an upgrade replaced the binary.
getent group acceptq >/dev/null || groupadd --system acceptq
if [ -f /var/lib/acceptq/setcap ]; then
    /usr/sbin/acceptq-setcap --reapply >/dev/null ||
        echo "acceptq: could not re-apply the capabilities chosen with acceptq-setcap; run it again" >&2
fi
exit 0
