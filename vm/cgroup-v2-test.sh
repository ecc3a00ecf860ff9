# Runs inside the test VM (vm/boot), as root in /mnt/share with the .debs beside it: installs the
# packages on a booted Debian 12 with cgroup v2 and Docker's systemd cgroup driver, runs containers
# with limits, and checks lookout's readings against the kernel's own cgroup v2 files.
set -u
failures=0
say() { echo "### $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# The value lookout's collector holds for a PromQL expression (one series), or "none".
lk() { lookout query "$1" 2>&1 | awk 'NF { v = $NF } END { print (v == "" ? "none" : v) }'; }
# check NAME KERNEL LOOKOUT LOW HIGH: LOW <= KERNEL - LOOKOUT <= HIGH.
check() {
    if awk -v k="$2" -v l="$3" -v lo="$4" -v hi="$5" 'BEGIN { d = k - l; exit !(l != "none" && d >= lo && d <= hi) }'; then
        echo "ok   $1: kernel $2, lookout $3"
    else
        fail "$1: kernel $2, lookout $3 (kernel - lookout must be in [$4, $5])"
    fi
}
field() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

say "system: $(stat -fc %T /sys/fs/cgroup), Docker $(docker info -f '{{.CgroupDriver}} cgroup v{{.CgroupVersion}}')"
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail "/sys/fs/cgroup is not cgroup v2"
[ "$(docker info -f '{{.CgroupDriver}}')" = systemd ] || fail "Docker's cgroup driver is not systemd"
docker import /root/busybox.tar bb:latest >/dev/null

say install
debs=$(ls ./lookout-collector_*.deb ./lookout-agent_*.deb ./lookout_*.deb | grep -v dbgsym)
apt-get install -y -q --no-install-recommends $debs >/dev/null 2>&1 || { apt-get install -y --no-install-recommends $debs; exit 1; }
sed -i 's/^interval = .*/interval = "2s"/' /etc/lookout/agent.toml
systemctl restart lookout-agent
systemctl is-active lookout-agent lookout-collector || { journalctl --no-pager -n 50 -u lookout-agent -u lookout-collector; exit 1; }

say containers
# Throttled to half a CPU, writes 32 MiB, then spins.
burn=$(docker run -d --name burn --cpus 0.5 --memory 128m --pids-limit 50 bb:latest \
    sh -c 'dd if=/dev/zero of=/tmp/f bs=1M count=32 2>/dev/null; sync; while :; do :; done')
# A child that grows until the kernel's OOM killer takes it; the container lives on.
oom=$(docker run -d --name oom --memory 32m --memory-swap 32m bb:latest \
    sh -c '(x=xxxxxxxxxxxxxxxx; while :; do x=$x$x; done); sleep 3600')
cg() { echo /sys/fs/cgroup/system.slice/docker-$1.scope; }
for c in $burn $oom; do [ -d "$(cg $c)" ] || fail "no cgroup at $(cg $c)"; done
for i in $(seq 60); do [ "$(field $(cg $oom)/memory.events oom_kill)" -ge 1 ] 2>/dev/null && break; sleep 1; done
# Until the collector holds both containers' readings, and some seconds of them.
for i in $(seq 90); do
    [ "$(lk "count(container_memory_usage_bytes{container=~\"burn|oom\"})")" = 2 ] && break
    sleep 2
done
sleep 8

say "readings against the kernel's files"
B=$(cg $burn)
check "cpu usage (s)" "$(field $B/cpu.stat usage_usec | awk '{ print $1 / 1e6 }')" \
    "$(lk "container_cpu_usage_seconds_total{container=\"burn\"}")" 0 3
check "cpu throttled periods" "$(field $B/cpu.stat nr_throttled)" \
    "$(lk "container_cpu_cfs_throttled_periods_total{container=\"burn\"}")" 0 60
check "cpu quota (us)" "$(awk '{ print $1 }' $B/cpu.max)" "$(lk "container_spec_cpu_quota{container=\"burn\"}")" 0 0
check "cpu period (us)" "$(awk '{ print $2 }' $B/cpu.max)" "$(lk "container_spec_cpu_period{container=\"burn\"}")" 0 0
check "memory limit" "$(cat $B/memory.max)" "$(lk "container_spec_memory_limit_bytes{container=\"burn\"}")" 0 0
mem=$(cat $B/memory.current)
check "memory usage" "$mem" "$(lk "container_memory_usage_bytes{container=\"burn\"}")" "-$((mem / 10))" "$((mem / 10))"
anon=$(field $B/memory.stat anon)
check "memory rss (anon)" "$anon" "$(lk "container_memory_rss{container=\"burn\"}")" -1048576 1048576
check "memory cache (file)" "$(field $B/memory.stat file)" "$(lk "container_memory_cache{container=\"burn\"}")" -1048576 1048576
check "io written" "$(awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^wbytes=/) { sub("wbytes=", "", $i); s += $i } } END { print s + 0 }' $B/io.stat)" \
    "$(lk "container_fs_writes_bytes_total{container=\"burn\"}")" 0 0
check "pids" "$(cat $B/pids.current)" "$(lk "container_processes{container=\"burn\"}")" 0 0
check "cpu pressure, some (s)" "$(awk '$1 == "some" { sub("total=", "", $5); print $5 / 1e6 }' $B/cpu.pressure)" \
    "$(lk "container_pressure_cpu_waiting_seconds_total{container=\"burn\"}")" 0 3
for r in memory io; do
    check "$r pressure, some (s)" "$(awk '$1 == "some" { sub("total=", "", $5); print $5 / 1e6 }' $B/$r.pressure)" \
        "$(lk "container_pressure_${r}_waiting_seconds_total{container=\"burn\"}")" 0 1
done
O=$(cg $oom)
check "oom kills" "$(field $O/memory.events oom_kill)" "$(lk "container_oom_events_total{container=\"oom\"}")" 0 0
[ "$(field $O/memory.events oom_kill)" -ge 1 ] || fail "the OOM killer never ran in the oom container"

say "the agent as the package runs it"
systemctl show -p User -p CapabilityBoundingSet lookout-agent
echo "agent RSS: $(ps -o rss= -C lookout-agent) KiB"
systemd-analyze security lookout-agent | tail -1
systemd-analyze security lookout-collector | tail -1
if [ "$failures" -gt 0 ]; then
    journalctl --no-pager -n 40 -u lookout-agent
    echo "$failures failed"
    exit 1
fi
echo "all readings agree"
