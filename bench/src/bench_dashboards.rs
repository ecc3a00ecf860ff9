//! `lookout bench dashboards`: Grafana's load on the collector, measured over HTTP beside real
//! Prometheus fed the same series by remote-write in the same run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lookout_collector::clock::now_ms;
use lookout_collector::ingest::remote_write;
use lookout_collector::model::{LabelSet, Samples};
use serde_json::Value;

use crate::{SimContainer, XorShift, SERIES};
use lookout_bench::dashboard::{self, Choice};

const CONTAINER_DASHBOARD: &str = include_str!("../../dashboards/containers.json");
/// Grafana's data source setting in dashboards/provisioning: the scrape interval `$__rate_interval` uses.
const SCRAPE_S: u64 = 10;
const STEP_S: u64 = 15;
/// Browsers open six connections per host; Grafana's panel queries share them.
const GRAFANA_CONCURRENCY: usize = 6;

pub fn run(containers: usize, hours: usize, runs: usize, label_series: usize, prometheus: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let tmp = tempfile::tempdir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let collector = crate::local_collector(&rt, tmp.path().join("lookout"), &shutdown)?;
    let mut targets = vec![("lookout", format!("http://{}", collector.http_addr))];
    let _prom = match prometheus {
        "none" => None,
        bin => {
            let p = PromProcess::start(bin, &tmp.path().join("prometheus"))?;
            targets.push(("prometheus", p.url.clone()));
            Some(p)
        }
    };
    let client = reqwest::Client::new();

    // Containers' series ending now, written in time order to every target.
    let end_ms = now_ms() / 10_000 * 10_000;
    let steps = hours * 360;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut sims: Vec<SimContainer> = (0..containers).map(|i| SimContainer::new(i, &mut rng)).collect();
    let written = Instant::now();
    for first in (0..steps).step_by(30) {
        let mut per_series: Vec<(LabelSet, Samples)> =
            sims.iter().flat_map(|s| s.labels.iter().map(|l| (l.clone(), Samples::default()))).collect();
        for k in first..(first + 30).min(steps) {
            let ts = end_ms - (steps - 1 - k) as i64 * 10_000;
            let mut i = 0;
            for sim in sims.iter_mut() {
                for v in sim.step(ts, &mut rng) {
                    per_series[i].1.ts.push(ts);
                    per_series[i].1.values.push(v);
                    i += 1;
                }
            }
        }
        write_all(&rt, &client, &targets, remote_write::encode(&per_series))?;
    }
    println!(
        "dashboards: {containers} containers x {} series, {hours} h at 10 s, written by remote-write to {} in {:.1} s",
        SERIES.len(),
        targets.iter().map(|t| t.0).collect::<Vec<_>>().join(" and "),
        written.elapsed().as_secs_f64()
    );
    if targets.len() > 1 {
        println!("  (prometheus: {prometheus}; both answer over HTTP on loopback; lookout runs in this process)");
    }

    let (start_s, end_s) = ((end_ms / 1000 - 3600) as u64, (end_ms / 1000) as u64);
    let range = |q: &str| -> Vec<(&'static str, String)> {
        vec![
            ("query", q.to_string()),
            ("start", start_s.to_string()),
            ("end", end_s.to_string()),
            ("step", STEP_S.to_string()),
        ]
    };
    let mut table: Vec<(String, Vec<(f64, f64)>)> = Vec::new();

    // The headline query, with $__rate_interval as Grafana computes it.
    let macros = dashboard::macros(3600, STEP_S, SCRAPE_S);
    let q = dashboard::substitute(
        "sum by (container) (rate(container_cpu_usage_seconds_total[$__rate_interval]))",
        &macros,
    );
    let row = targets
        .iter()
        .map(|(_, base)| time_runs(&rt, runs, || one(&client, base, "/api/v1/query_range", range(&q), true)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    table.push((format!("{q}, 1 h at {STEP_S} s"), row));

    // The whole container dashboard: variables on All, every panel, sequential and 6 at a time.
    let board = dashboard::parse(&serde_json::from_str(CONTAINER_DASHBOARD)?).map_err(anyhow::Error::msg)?;
    let mut values: BTreeMap<String, String> = macros.clone();
    for v in &board.variables {
        values.insert(v.name.clone(), dashboard::format(v, &Choice::All, &[]));
    }
    let exprs: Vec<String> = board.targets.iter().map(|t| dashboard::substitute(&t.expr, &values)).collect();
    let mut seq_row = Vec::new();
    let mut par_row = Vec::new();
    for (_, base) in &targets {
        seq_row.push(time_runs(&rt, runs, || async {
            for e in &exprs {
                one(&client, base, "/api/v1/query_range", range(e), false).await?;
            }
            Ok(())
        })?);
        par_row.push(time_runs(&rt, runs, || async {
            use futures::stream::{self, StreamExt, TryStreamExt};
            stream::iter(exprs.iter().map(|e| one(&client, base, "/api/v1/query_range", range(e), false)))
                .buffer_unordered(GRAFANA_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            Ok(())
        })?);
    }
    table.push((format!("container dashboard, {} panel queries one after another", exprs.len()), seq_row));
    table.push((format!("container dashboard, {GRAFANA_CONCURRENCY} at a time as a browser sends them"), par_row));

    // Label values on a store of `label_series` series more.
    let extra = label_series.div_ceil(SERIES.len());
    let mut more: Vec<SimContainer> = (0..extra).map(|i| SimContainer::new(containers + i, &mut rng)).collect();
    let mut per_series: Vec<(LabelSet, Samples)> = Vec::new();
    for sim in more.iter_mut() {
        let vals = sim.step(end_ms, &mut rng);
        for (l, v) in sim.labels.iter().zip(vals) {
            per_series.push((l.clone(), Samples { ts: vec![end_ms], values: vec![v] }));
        }
    }
    for chunk in per_series.chunks(5000) {
        write_all(&rt, &client, &targets, remote_write::encode(chunk))?;
    }
    let total = (containers + extra) * SERIES.len();
    let lv = |with_match: bool| -> Vec<(&'static str, String)> {
        let mut p = vec![("start", start_s.to_string()), ("end", end_s.to_string())];
        if with_match {
            p.push(("match[]", r#"container_last_seen{host=~".*", service=~".*"}"#.to_string()));
        }
        p
    };
    for (what, path, with_match) in [
        ("label values of `container`", "/api/v1/label/container/values", false),
        (
            "label_values(container_last_seen{host=~\".*\", service=~\".*\"}, container)",
            "/api/v1/label/container/values",
            true,
        ),
    ] {
        let row = targets
            .iter()
            .map(|(_, base)| time_runs(&rt, runs, || get(&client, base, path, lv(with_match))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        table.push((format!("{what}, {total} series"), row));
    }

    println!("  {runs} runs each, best / median in ms:");
    for (what, row) in &table {
        let cells: Vec<String> =
            row.iter().zip(&targets).map(|((b, m), (name, _))| format!("{name} {b:.1} / {m:.1}")).collect();
        println!("  {what}\n      {}", cells.join("    "));
    }
    shutdown.cancel();
    Ok(())
}

pub(crate) fn write_all(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    targets: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<()> {
    rt.block_on(async {
        for (name, base) in targets {
            let r = client
                .post(format!("{base}/api/v1/write"))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{name} refused a write: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    })
}

/// One query; the headline query must find data, panels whose metrics the simulation lacks need not.
async fn one(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    form: Vec<(&str, String)>,
    need_data: bool,
) -> anyhow::Result<()> {
    let r = client.post(format!("{base}{path}")).form(&form).send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    // The answer is read whole but not parsed: parsing is the browser's cost, and in this process it
    // would take the CPU the servers are measured on. Both servers write these keys this way.
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(
        status.is_success() && text.contains(r#""status":"success""#),
        "{base}{path} {form:?}: {status} {text}"
    );
    anyhow::ensure!(!need_data || !text.contains(r#""result":[]"#), "{base}{path} {form:?}: empty result");
    Ok(())
}

async fn get(client: &reqwest::Client, base: &str, path: &str, query: Vec<(&str, String)>) -> anyhow::Result<()> {
    let r = client.get(format!("{base}{path}")).query(&query).send().await?;
    let body: Value = r.json().await?;
    anyhow::ensure!(body["data"].as_array().is_some_and(|a| !a.is_empty()), "{base}{path}: {body}");
    Ok(())
}

/// Best and median of `runs` timed runs, in milliseconds, after one warm-up run.
fn time_runs<F, Fut>(rt: &tokio::runtime::Runtime, runs: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    rt.block_on(f())?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        rt.block_on(f())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2]))
}

/// A Prometheus server with the remote-write receiver, on a free port, killed on drop.
pub(crate) struct PromProcess {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl PromProcess {
    pub(crate) fn start(bin: &str, dir: &std::path::Path) -> anyhow::Result<PromProcess> {
        std::fs::create_dir_all(dir)?;
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n")?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run {bin}: {e} (apt-get install prometheus, or --prometheus none)"))?;
        let url = format!("http://{addr}");
        let p = PromProcess { child, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            while Instant::now() < deadline {
                if reqwest::get(format!("{}/-/ready", p.url)).await.is_ok_and(|r| r.status().is_success()) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("prometheus not ready in 30 s; its log is in {}", dir.display())
        })?;
        Ok(p)
    }
}

impl Drop for PromProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
