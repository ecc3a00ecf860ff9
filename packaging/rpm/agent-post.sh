# %post: a first install enables and starts the service, an upgrade restarts it (config kept; a
# changed default arrives as .rpmnew).

systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl enable --now lookout-agent.service >/dev/null 2>&1 || :
else
    systemctl try-restart lookout-agent.service >/dev/null 2>&1 || :
fi
