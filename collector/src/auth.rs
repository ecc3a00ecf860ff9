//! Who may do what: the tokens file (SHA-256 hashes of tokens, never the tokens), each entry's
//! scopes and the hosts an agent's token may speak for, the constant-time check of a presented
//! token, and the file re-read when it changes. Knows nothing of HTTP or gRPC; `ingest` and `api` ask it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Stream metrics, logs and health over gRPC, for the hosts the entry names.
    Agent,
    /// Queries, labels, series, logs, tail, health, decisions, status.
    Read,
    /// Remote-write and any other way in for data.
    Write,
    /// Anything that changes state: starting gates. Implies `read` and `write`.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        [Scope::Agent, Scope::Read, Scope::Write, Scope::Admin].into_iter().find(|x| x.as_str() == s)
    }
}

/// One line of the tokens file.
#[derive(Clone, Debug)]
pub struct Credential {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// `None` for an entry known only by a client certificate naming it (`-` in the file).
    hash: Option<[u8; 32]>,
    /// For `agent` tokens: the hosts it may speak for (`web-01`, `edge-*`); `*` alone is any host.
    pub hosts: Vec<String>,
    host_match: Option<regex::Regex>,
}

impl Credential {
    /// Whether this token may act in `scope` (`admin` may read and write too).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || (*s == Scope::Admin && matches!(scope, Scope::Read | Scope::Write)))
    }

    /// Whether an agent with this token may say it is `host`.
    pub fn speaks_for(&self, host: &str) -> bool {
        self.host_match.as_ref().is_some_and(|re| re.is_match(host))
    }
}

/// Why the tokens file cannot be used; every error names the file and, for a bad line, its number.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} can be read by other users (mode {mode:o}); make it readable by lookout's user only: chmod 600 {path}"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{path} line {line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },
}

/// The tokens a collector accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<Credential>,
}

impl Tokens {
    /// Reads a tokens file: one entry a line, `name scopes sha256 [hosts]`, `#` comments.
    /// `scopes` is a comma-separated list of `agent`, `read`, `write`, `admin`; `sha256` is `-` for
    /// an entry that only a client certificate with the entry's name (SAN or CN) can use; `hosts`
    /// (for `agent`) a comma-separated list of host names where `*` matches any run of characters.
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let io = |source| AuthError::Io { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(AuthError::Readable { path: path.to_path_buf(), mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Tokens::parse(&text).map_err(|(line, message)| AuthError::Line { path: path.to_path_buf(), line, message })
    }

    /// The entries of a tokens file's text, or the first bad line (1-based) and what is wrong.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries: Vec<Credential> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |m: String| (i + 1, m);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, hash, rest @ ..] = fields.as_slice() else {
                return Err(bad("expected `name scopes sha256 [hosts]`".into()));
            };
            if rest.len() > 1 {
                return Err(bad(format!("unexpected {:?} after the hosts", rest[1])));
            }
            let scopes = scopes
                .split(',')
                .map(|s| Scope::parse(s).ok_or_else(|| bad(format!("scope {s:?}: one of agent, read, write, admin"))))
                .collect::<Result<Vec<_>, _>>()?;
            let hash = match *hash {
                "-" => None,
                h => Some(parse_hash(h).ok_or_else(|| {
                    bad("the third field is the token's SHA-256 in hex (64 characters), or - for an entry only a client certificate uses; `lookout token new` prints it"
                        .into())
                })?),
            };
            let hosts: Vec<String> =
                rest.first().map(|h| h.split(',').map(str::to_string).collect()).unwrap_or_default();
            let agent = scopes.contains(&Scope::Agent);
            if agent && hosts.is_empty() {
                return Err(bad(format!("{name}: an agent token names the hosts it may speak for (`*` for any)")));
            }
            if !agent && !hosts.is_empty() {
                return Err(bad(format!("{name}: hosts are for agent tokens")));
            }
            if entries.iter().any(|e| e.name == *name) {
                return Err(bad(format!("{name}: the name is used twice")));
            }
            if hash.is_some_and(|h| entries.iter().any(|e| e.hash.is_some_and(|x| bool::from(x.ct_eq(&h))))) {
                return Err(bad(format!("{name}: the same token as another entry")));
            }
            let host_match = agent.then(|| host_regex(&hosts));
            entries.push(Credential { name: name.to_string(), scopes, hash, hosts, host_match });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of a presented token. Every entry is compared, each in constant time, so how long
    /// it takes says nothing of which entry (if any) was close.
    pub fn check(&self, token: &str) -> Option<&Credential> {
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for e in &self.entries {
            if e.hash.is_some_and(|h| bool::from(h.ct_eq(&given))) {
                found = Some(e);
            }
        }
        found
    }

    /// The entry a verified client certificate speaks for: the first of its names that is an
    /// entry's name.
    pub fn by_names(&self, names: &[String]) -> Option<&Credential> {
        names.iter().find_map(|n| self.entries.iter().find(|e| e.name == *n))
    }

    /// The entry called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Credential> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// The tokens in force: none asked for (no `tokens_file`: loopback listeners or `insecure`), or the
/// tokens file as it was last read. The file is re-read when it changes and on SIGHUP; a file that
/// became unreadable or bad keeps the tokens in use and says why, so a typo never opens or locks the
/// collector. An emptied file accepts nobody: only a config without `tokens_file` is open.
pub struct TokenFile {
    path: Option<PathBuf>,
    current: RwLock<Arc<Tokens>>,
    stamp: Mutex<Option<SystemTime>>,
    generation: AtomicU64,
    /// Whether callers must show credentials: there is a tokens file (or fixed tokens).
    required: bool,
}

impl TokenFile {
    /// No tokens file: no credentials are asked for.
    pub fn open() -> TokenFile {
        TokenFile::with(None, Tokens::default(), false)
    }

    /// Tokens that are not read from a file (tests, benches); asked for like a file's.
    pub fn fixed(tokens: Tokens) -> TokenFile {
        TokenFile::with(None, tokens, true)
    }

    pub fn load(path: &Path) -> Result<TokenFile, AuthError> {
        let t = TokenFile::with(Some(path.to_path_buf()), Tokens::load(path)?, true);
        *t.stamp.lock().expect("tokens stamp lock poisoned") = modified(path);
        Ok(t)
    }

    fn with(path: Option<PathBuf>, tokens: Tokens, required: bool) -> TokenFile {
        TokenFile {
            path,
            current: RwLock::new(Arc::new(tokens)),
            stamp: Mutex::new(None),
            generation: AtomicU64::new(0),
            required,
        }
    }

    /// Whether callers must show credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The tokens as they are now.
    pub fn now(&self) -> Arc<Tokens> {
        self.current.read().expect("tokens lock poisoned").clone()
    }

    /// Counts the reads that changed the tokens, so a long-lived stream can tell that it should look
    /// at its credential again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Reads the file again; a bad file keeps the tokens in use.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        match Tokens::load(path) {
            Ok(t) => {
                let n = t.len();
                *self.current.write().expect("tokens lock poisoned") = Arc::new(t);
                self.generation.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %path.display(), entries = n, "tokens file re-read; new requests and streams use it");
            }
            Err(e) => {
                tracing::error!(error = %e, "tokens file not re-read; the tokens read before stay in use")
            }
        }
    }

    /// Re-reads the file when its modification time changed since the last look.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let now = modified(path);
        let changed = std::mem::replace(&mut *self.stamp.lock().expect("tokens stamp lock poisoned"), now) != now;
        if changed {
            self.reload();
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `web-01,edge-*` as one anchored pattern; every other character stands for itself.
fn host_regex(hosts: &[String]) -> regex::Regex {
    let alternatives: Vec<String> =
        hosts.iter().map(|h| h.split('*').map(regex::escape).collect::<Vec<_>>().join(".*")).collect();
    regex::Regex::new(&format!("^(?:{})$", alternatives.join("|"))).expect("escaped text and .* always compile")
}

/// The SHA-256 of a token in hex, as the tokens file holds it.
pub fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: 32 bytes from the operating system's generator, in URL-safe base64 without
/// padding (43 characters, safe in a header, a URL and a shell).
pub fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(lines: &[(&str, &str, &str, &str)]) -> String {
        lines.iter().map(|(n, s, t, h)| format!("{n} {s} {} {h}\n", hash_hex(t))).collect()
    }

    #[test]
    fn a_token_is_known_by_its_hash_and_allows_only_its_scopes_and_hosts() {
        let text = file(&[
            ("grafana", "read", "tok-grafana", ""),
            ("ci", "admin", "tok-ci", ""),
            ("edge", "agent", "tok-edge", "edge-*,gateway"),
        ]);
        let t = Tokens::parse(&format!("# name scopes sha256 hosts\n\n{text}")).unwrap();
        assert_eq!(t.len(), 3);
        let g = t.check("tok-grafana").unwrap();
        assert_eq!(g.name, "grafana");
        assert!(g.allows(Scope::Read) && !g.allows(Scope::Write) && !g.allows(Scope::Admin) && !g.allows(Scope::Agent));
        let ci = t.check("tok-ci").unwrap();
        assert!(ci.allows(Scope::Read) && ci.allows(Scope::Write) && !ci.allows(Scope::Agent));
        let edge = t.check("tok-edge").unwrap();
        assert!(edge.speaks_for("edge-1") && edge.speaks_for("gateway") && !edge.speaks_for("gateway-2"));
        assert!(!edge.speaks_for("db") && !edge.speaks_for("xedge-1"), "patterns are anchored");
        assert!(!g.speaks_for("edge-1"), "a read token speaks for no host");
        assert!(t.check("tok-grafanA").is_none() && t.check("").is_none());
    }

    #[test]
    fn bad_lines_name_their_number_and_what_is_wrong() {
        let h = hash_hex("x");
        let err = |text: &str| Tokens::parse(text).unwrap_err();
        assert_eq!(err("a read\n").0, 1);
        assert!(err(&format!("\na reed {h}\n")).1.contains("scope \"reed\""));
        assert!(err("a read abc\n").1.contains("SHA-256 in hex"));
        assert!(err(&format!("a agent {h}\n")).1.contains("names the hosts"));
        assert!(err(&format!("a read {h} web\n")).1.contains("hosts are for agent tokens"));
        assert!(err(&format!("a read {h}\na write {}\n", hash_hex("y"))).1.contains("used twice"));
        assert!(err(&format!("a read {h}\nb write {h}\n")).1.contains("the same token"));
    }

    #[test]
    fn new_tokens_differ_and_hash_to_what_the_file_holds() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let t = Tokens::parse(&format!("x read sha256:{}\n", hash_hex(&a))).unwrap();
        assert!(t.check(&a).is_some() && t.check(&b).is_none());
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, file(&[("g", "read", "t", "")])).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Tokens::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Tokens::load(&p).unwrap().len(), 1);
    }

    #[test]
    fn an_entry_without_a_hash_is_found_only_by_certificate_name() {
        let t = Tokens::parse(&format!("grafana read -\nci admin -\nweb read {}\n", hash_hex("tok"))).unwrap();
        assert!(t.check("-").is_none() && t.check("").is_none(), "no token matches a certificate-only entry");
        assert_eq!(t.by_names(&["nobody".into(), "ci".into()]).unwrap().name, "ci");
        assert!(t.by_names(&["stranger".into()]).is_none());
        assert_eq!(t.check("tok").unwrap().name, "web");
    }

    #[test]
    fn the_file_is_reread_when_it_changes_and_a_bad_one_keeps_what_was_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        let write = |text: String, mtime: u64| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime)).unwrap();
        };
        write(file(&[("a", "read", "tok-a", "")]), 1000);
        let tf = TokenFile::load(&p).unwrap();
        assert!(tf.required() && tf.now().check("tok-a").is_some());
        let g = tf.generation();
        tf.reload_if_changed();
        assert_eq!(tf.generation(), g, "an unchanged file is not read again");
        write(file(&[("b", "read", "tok-b", "")]), 2000);
        tf.reload_if_changed();
        assert!(tf.now().check("tok-a").is_none(), "a removed token is refused from now on");
        assert!(tf.now().check("tok-b").is_some() && tf.generation() > g);
        write("b reed zz\n".into(), 3000);
        tf.reload_if_changed();
        assert!(tf.now().check("tok-b").is_some(), "a bad file keeps the tokens in use");
        write(String::new(), 4000);
        tf.reload_if_changed();
        assert!(tf.required() && tf.now().check("tok-b").is_none(), "an emptied file lets nobody in");
        assert!(!TokenFile::open().required());
    }
}
