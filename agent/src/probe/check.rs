//! Running one probe against a container, from outside it: HTTP, TCP, Docker exec, Docker's own
//! health status, or the log error rate. Every run is bounded by its timeout and its output by 4 KiB.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use futures::StreamExt;

use super::errors::ErrorRates;
use super::health::State;
use super::spec::Check;

/// Output kept per run, as Docker keeps for its own health checks.
pub const OUTPUT_CAP: usize = 4096;
/// Bytes of an HTTP body read at most (for the body pattern); the rest is not read.
pub const BODY_CAP: usize = 64 * 1024;

/// What a probe runs against.
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    /// The container's address on its network; 127.0.0.1 for host networking.
    pub address: Option<IpAddr>,
}

/// One run's result. `docker` carries Docker's own view when the check is `docker`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub output: String,
    pub docker: Option<(State, u32)>,
}

impl Outcome {
    fn pass(output: String) -> Outcome {
        Outcome { success: true, output: cap(output), docker: None }
    }
    fn fail(output: String) -> Outcome {
        Outcome { success: false, output: cap(output), docker: None }
    }
}

/// Shared by all probes: one Docker client, the log error rates, and where `/proc` is. HTTP and TCP
/// probes open a fresh connection each run: each run must see the container as a new client would.
pub struct Runner {
    pub docker: Option<Docker>,
    pub rates: Arc<ErrorRates>,
    /// The host's `/proc`, where a timed-out exec's processes are found to be ended.
    pub proc_root: std::path::PathBuf,
}

impl Runner {
    pub fn new(docker: Option<Docker>, rates: Arc<ErrorRates>, proc_root: std::path::PathBuf) -> Runner {
        Runner { docker, rates, proc_root }
    }

    /// Runs `check` once, giving up after `timeout` (a failure that says so).
    pub async fn run(&self, check: &Check, target: &Target, timeout: Duration) -> Outcome {
        let inner = self.run_inner(check, target, timeout);
        if matches!(check, Check::Exec { .. }) {
            // An exec keeps its own deadline: ending a command that overran needs the exec's id.
            return inner.await;
        }
        match tokio::time::timeout(timeout, inner).await {
            Ok(o) => o,
            Err(_) => Outcome::fail(format!("timed out after {}", humantime::format_duration(timeout))),
        }
    }

    async fn run_inner(&self, check: &Check, target: &Target, timeout: Duration) -> Outcome {
        match check {
            Check::Http { port, path, body } => {
                let Some(ip) = target.address else { return Outcome::fail("the container has no address".into()) };
                http_get(SocketAddr::new(ip, *port), path, body.as_ref()).await
            }
            Check::Tcp { port } => {
                let Some(ip) = target.address else { return Outcome::fail("the container has no address".into()) };
                let addr = SocketAddr::new(ip, *port);
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => Outcome::pass(format!("connected to {addr}")),
                    Err(e) => Outcome::fail(format!("connect to {addr}: {e}")),
                }
            }
            Check::Exec { command } => match &self.docker {
                Some(d) => exec(d, &target.container_id, command, timeout, &self.proc_root).await,
                None => Outcome::fail("no Docker connection".into()),
            },
            Check::Docker => match &self.docker {
                Some(d) => docker_health(d, &target.container_id).await,
                None => Outcome::fail("no Docker connection".into()),
            },
            Check::LogErrorRate { threshold, window, min_lines, .. } => {
                let (lines, errors) = self.rates.rate(&target.container_id, crate::clock::now_ns(), *window);
                error_rate_outcome(lines, errors, *threshold, *window, *min_lines)
            }
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str, body: Option<&regex::Regex>) -> Outcome {
    let url = format!("http://{addr}{path}");
    let resp = match super::http::get(addr, path, BODY_CAP).await {
        Ok(r) => r,
        Err(super::http::Failure { status: None, why }) => return Outcome::fail(format!("GET {url}: {why}")),
        Err(super::http::Failure { status: Some(status), why }) => {
            return Outcome::fail(format!("GET {url}: HTTP {status}, body cut: {why}"));
        }
    };
    let text = String::from_utf8_lossy(&resp.body);
    let ok_status = (200..400).contains(&resp.status);
    let excerpt: String = text.chars().take(512).collect();
    let mut out = format!("GET {url}: HTTP {}", resp.status);
    if !excerpt.is_empty() {
        out.push_str(": ");
        out.push_str(excerpt.trim_end());
    }
    match body {
        _ if !ok_status => Outcome::fail(out),
        Some(re) if !re.is_match(&text) => {
            Outcome::fail(format!("{out} (body does not match {:?} in its first {BODY_CAP} bytes)", re.as_str()))
        }
        _ => Outcome::pass(out),
    }
}

/// The `log_error_rate` verdict from the window's counts.
pub fn error_rate_outcome(lines: u64, errors: u64, threshold: f64, window: Duration, min_lines: u64) -> Outcome {
    let w = humantime::format_duration(window);
    if lines < min_lines {
        return Outcome::pass(format!(
            "{errors} of {lines} lines matched in the last {w}: fewer than {min_lines} lines, not judged"
        ));
    }
    let rate = errors as f64 / lines as f64;
    let text = format!(
        "{errors} of {lines} lines matched in the last {w} ({:.1}%, threshold {:.1}%)",
        rate * 100.0,
        threshold * 100.0
    );
    if rate > threshold {
        Outcome::fail(text)
    } else {
        Outcome::pass(text)
    }
}

async fn exec(docker: &Docker, container: &str, command: &str, timeout: Duration, proc_root: &Path) -> Outcome {
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || Outcome::fail(format!("timed out after {}", humantime::format_duration(timeout)));
    let config = bollard::models::ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), command.into()]),
        ..Default::default()
    };
    let created = match tokio::time::timeout_at(deadline, docker.create_exec(container, config)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Outcome::fail(format!("exec {command:?}: {e}")),
        Err(_) => return timed_out(),
    };
    let run = async {
        let mut output: Vec<u8> = Vec::new();
        match docker.start_exec(&created.id, None).await {
            Ok(bollard::exec::StartExecResults::Attached { output: mut stream, .. }) => {
                // Read to the end (the command's exit), keeping only the first bytes.
                while let Some(piece) = stream.next().await {
                    match piece {
                        Ok(p) => {
                            let bytes = p.into_bytes();
                            let room = OUTPUT_CAP.saturating_sub(output.len());
                            output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                        }
                        Err(e) => return Err(Outcome::fail(format!("exec {command:?}: output: {e}"))),
                    }
                }
            }
            Ok(bollard::exec::StartExecResults::Detached) => {}
            Err(e) => return Err(Outcome::fail(format!("exec {command:?}: {e}"))),
        }
        let text = String::from_utf8_lossy(&output).trim_end().to_string();
        Ok(match docker.inspect_exec(&created.id).await.map(|i| i.exit_code) {
            Ok(Some(0)) => Outcome::pass(text),
            Ok(Some(code)) => Outcome::fail(format!("exit code {code}: {text}")),
            Ok(None) => Outcome::fail(format!("no exit code: {text}")),
            Err(e) => Outcome::fail(format!("exec {command:?}: inspect: {e}")),
        })
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(o) | Err(o)) => o,
        Err(_) => {
            // Docker leaves an exec that overran running (its own HEALTHCHECK does too), so a probe
            // stuck every interval would pile up processes: end it and what it started. On a busy
            // host dockerd may start it only after the deadline (the start request was already
            // sent), so its process is looked for a little longer than the moment of the timeout.
            let running_pid = async {
                loop {
                    let i = docker.inspect_exec(&created.id).await?;
                    match (i.running, i.pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0)) {
                        (Some(true), Some(pid)) => return Ok::<_, bollard::errors::Error>(Some(pid)),
                        // Ended (or never to start): nothing to end, and its old pid may be reused.
                        _ if i.exit_code.is_some() => return Ok(None),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(2), running_pid).await {
                Ok(Ok(Some(pid))) => {
                    let n = kill_tree(proc_root, pid);
                    tracing::debug!(container, command, pid, killed = n, "ended a timed-out exec probe");
                }
                Ok(Ok(None)) => tracing::debug!(container, command, "a timed-out exec probe had already ended"),
                Ok(Err(e)) => tracing::warn!(
                    container,
                    command,
                    error = %e,
                    "a timed-out exec probe could not be inspected; it may still run"
                ),
                Err(_) => tracing::warn!(
                    container,
                    command,
                    "a timed-out exec probe did not start in 2 s; it may start later"
                ),
            }
            timed_out()
        }
    }
}

/// Sends SIGKILL to `pid` and every process descending from it (parents read from `proc_root`);
/// returns how many were signalled.
fn kill_tree(proc_root: &Path, pid: i32) -> usize {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for entry in std::fs::read_dir(proc_root).into_iter().flatten().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if let Some(parent) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(parent_of) {
            children.entry(parent).or_default().push(p);
        }
    }
    let (mut todo, mut all) = (vec![pid], Vec::new());
    while let Some(p) = todo.pop() {
        all.push(p);
        todo.extend(children.get(&p).into_iter().flatten());
    }
    all.iter()
        .filter_map(|p| rustix::process::Pid::from_raw(*p))
        .filter(|p| rustix::process::kill_process(*p, rustix::process::Signal::KILL).is_ok())
        .count()
}

/// The parent pid in a `/proc/<pid>/stat` line: `pid (comm) state ppid ...`, where `comm` may hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parent_of(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

async fn docker_health(docker: &Docker, container: &str) -> Outcome {
    use bollard::models::HealthStatusEnum;
    let info =
        match docker.inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>).await {
            Ok(i) => i,
            Err(e) => return Outcome::fail(format!("inspect: {e}")),
        };
    let Some(h) = info.state.and_then(|s| s.health) else {
        return Outcome::fail("the container reports no health".into());
    };
    let state = match h.status {
        Some(HealthStatusEnum::HEALTHY) => State::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => State::Unhealthy,
        _ => State::Starting,
    };
    let last = h.log.and_then(|l| l.into_iter().last());
    let exit = last.as_ref().and_then(|r| r.exit_code);
    let output = last.and_then(|r| r.output).unwrap_or_default();
    let streak = h.failing_streak.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
    let text = match exit {
        Some(code) => format!("Docker: {} (last check exit code {code}): {}", state.as_str(), output.trim_end()),
        None => format!("Docker: {}", state.as_str()),
    };
    Outcome {
        success: exit.is_none_or(|c| c == 0) && state != State::Unhealthy,
        output: cap(text),
        docker: Some((state, streak)),
    }
}

/// At most `OUTPUT_CAP` bytes, cut on a character boundary.
fn cap(mut s: String) -> String {
    if s.len() > OUTPUT_CAP {
        let mut at = OUTPUT_CAP;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_past_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(parent_of("4242 (sh) S 4100 4242 4100 0 -1 4194560"), Some(4100));
        assert_eq!(parent_of("77 (my (odd) name) R 1 77 77 0"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }
    use std::io::{Read, Write};

    fn runner() -> Runner {
        Runner::new(None, Arc::new(ErrorRates::default()), "/proc".into())
    }

    /// A one-shot HTTP server on loopback answering every connection with `reply` (or doing `hang`).
    fn serve(reply: Vec<u8>, hang: bool) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                if hang {
                    std::thread::sleep(Duration::from_secs(5));
                }
                let _ = s.write_all(&reply);
            }
        });
        port
    }

    fn local() -> Target {
        Target { container_id: "c".into(), address: Some(IpAddr::from([127, 0, 0, 1])) }
    }

    #[tokio::test]
    async fn http_status_decides_and_the_body_pattern_must_match() {
        let r = runner();
        let ok = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nall ok\n".to_vec(), false);
        let o = r
            .run(&Check::Http { port: ok, path: "/healthz".into(), body: None }, &local(), Duration::from_secs(2))
            .await;
        assert!(o.success && o.output.contains("HTTP 200: all ok"), "{o:?}");
        let body = Some(regex::Regex::new("^ready").unwrap());
        let o = r.run(&Check::Http { port: ok, path: "/".into(), body }, &local(), Duration::from_secs(2)).await;
        assert!(!o.success && o.output.contains("does not match"), "{o:?}");
        let redirect = serve(b"HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n".to_vec(), false);
        let o = r
            .run(&Check::Http { port: redirect, path: "/".into(), body: None }, &local(), Duration::from_secs(2))
            .await;
        assert!(o.success, "3xx passes without being followed: {o:?}");
        let err = serve(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown".to_vec(), false);
        let o = r.run(&Check::Http { port: err, path: "/".into(), body: None }, &local(), Duration::from_secs(2)).await;
        assert!(!o.success && o.output.contains("HTTP 503: down"), "{o:?}");
    }

    #[tokio::test]
    async fn a_hanging_target_is_a_failure_at_the_timeout_and_a_huge_body_is_not_read_whole() {
        let r = runner();
        let hang = serve(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), true);
        let t0 = std::time::Instant::now();
        let o = r
            .run(&Check::Http { port: hang, path: "/".into(), body: None }, &local(), Duration::from_millis(300))
            .await;
        assert!(!o.success && o.output.starts_with("timed out after 300ms"), "{o:?}");
        assert!(t0.elapsed() < Duration::from_secs(4), "gave up at the timeout, not when the target answered");

        let mut huge = b"HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 10 << 20));
        let big = serve(huge, false);
        let o = r.run(&Check::Http { port: big, path: "/".into(), body: None }, &local(), Duration::from_secs(5)).await;
        assert!(o.success && o.output.len() <= OUTPUT_CAP, "{}", o.output.len());
    }

    #[tokio::test]
    async fn tcp_connects_or_says_why_not() {
        let r = runner();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(r.run(&Check::Tcp { port }, &local(), Duration::from_secs(1)).await.success);
        drop(l);
        let o = r.run(&Check::Tcp { port }, &local(), Duration::from_secs(1)).await;
        assert!(!o.success && o.output.contains("refused"), "{o:?}");
    }

    #[test]
    fn error_rate_needs_enough_lines_before_it_may_fail() {
        let w = Duration::from_secs(60);
        assert!(error_rate_outcome(10, 10, 0.05, w, 20).success, "10 lines are too few to judge");
        let o = error_rate_outcome(200, 40, 0.05, w, 20);
        assert!(
            !o.success && o.output.contains("40 of 200 lines matched in the last 1m (20.0%, threshold 5.0%)"),
            "{o:?}"
        );
        assert!(error_rate_outcome(200, 2, 0.05, w, 20).success);
    }

    #[test]
    fn output_is_capped_on_a_character_boundary() {
        let s = cap("é".repeat(OUTPUT_CAP));
        assert!(s.len() <= OUTPUT_CAP && s.chars().all(|c| c == 'é'));
    }
}
