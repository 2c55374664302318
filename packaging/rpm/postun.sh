# On erase (not upgrade) forget the acceptq-setcap choice; the group stays (see postrm).
if [ "$1" -eq 0 ]; then
    rm -f /var/lib/acceptq/setcap
    rmdir /var/lib/acceptq 2>/dev/null || true
fi
exit 0
