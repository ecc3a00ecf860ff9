# %preun: an erase (not an upgrade) stops and disables the service; config and data stay.
if [ "$1" -eq 0 ]; then
    systemctl disable --now lookout-agent.service >/dev/null 2>&1 || :
fi
