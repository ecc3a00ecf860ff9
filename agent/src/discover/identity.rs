//! A container's identity labels as design section 3 defines them: service, version and the
//! allowed pass-through labels. Pure functions of the inspect data.

use super::Container;

/// `lookout.service`, else `com.docker.compose.service`, else the image repository's last path part.
pub fn service_of(c: &Container) -> String {
    if let Some(s) = label(c, "lookout.service").or_else(|| label(c, "com.docker.compose.service")) {
        return s.to_string();
    }
    let (repo, _) = split_image(&c.image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    if last.is_empty() || last.starts_with("sha256:") {
        c.name.clone()
    } else {
        last.to_string()
    }
}

/// `lookout.version`, else the image's explicit tag, else the image id's first 12 hex digits.
pub fn version_of(c: &Container) -> String {
    if let Some(v) = label(c, "lookout.version") {
        return v.to_string();
    }
    if let (_, Some(tag)) = split_image(&c.image) {
        return tag.to_string();
    }
    let hex = c.image_id.strip_prefix("sha256:").unwrap_or(&c.image_id);
    hex.chars().take(12).collect()
}

/// The labels every series, line and probe result of this container carries, in name order is not
/// required here (the collector sorts). `include` lists the container labels allowed to pass through.
pub fn identity_labels(host: &str, c: &Container, include: &[String]) -> Vec<(String, String)> {
    let mut out = vec![
        ("host".to_string(), host.to_string()),
        ("container".to_string(), c.name.clone()),
        ("container_id".to_string(), c.id.as_str().to_string()),
        ("image".to_string(), c.image.clone()),
        ("service".to_string(), service_of(c)),
        ("version".to_string(), version_of(c)),
    ];
    for key in include {
        if let Some(v) = label(c, key) {
            out.push((sanitize_label_name(key), v.to_string()));
        }
    }
    out
}

/// The labels a Prometheus scrape of node_exporter or cAdvisor would give: `job` and `instance`.
/// Host series take `host_job`, container series `container_job`; `instance` is a template in which
/// `{host}` stands for the host label (default `{host}`; `{host}:9100` looks like a scrape of
/// node_exporter itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeLabels {
    pub host_job: String,
    pub container_job: String,
    pub instance: String,
}

impl Default for ScrapeLabels {
    fn default() -> Self {
        ScrapeLabels { host_job: "node".into(), container_job: "cadvisor".into(), instance: "{host}".into() }
    }
}

impl ScrapeLabels {
    pub fn instance_of(&self, host: &str) -> String {
        self.instance.replace("{host}", host)
    }
}

/// The labels of the host's own series: `host`, `job`, `instance`.
pub fn host_metric_labels(host: &str, scrape: &ScrapeLabels) -> Vec<(String, String)> {
    vec![
        ("host".to_string(), host.to_string()),
        ("job".to_string(), scrape.host_job.clone()),
        ("instance".to_string(), scrape.instance_of(host)),
    ]
}

/// The labels of a container's metric series: its [`identity_labels`], the scrape's `job` and
/// `instance`, and cAdvisor's own: `name` (the container name), `id` (its cgroup path, `cgroup_id`,
/// e.g. `/docker/<id>`), and `container_label_<key>` for each allowed container label. A name already
/// taken (an included label called `name`, say) is not given twice.
pub fn metric_labels(
    host: &str,
    c: &Container,
    include: &[String],
    scrape: &ScrapeLabels,
    cgroup_id: &str,
) -> Vec<(String, String)> {
    let mut out = identity_labels(host, c, include);
    let mut add = |k: String, v: String| {
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, v));
        }
    };
    add("job".into(), scrape.container_job.clone());
    add("instance".into(), scrape.instance_of(host));
    add("name".into(), c.name.clone());
    add("id".into(), cgroup_id.to_string());
    for key in include {
        if let Some(v) = label(c, key) {
            add(format!("container_label_{}", valid_chars(key)), v.to_string());
        }
    }
    out
}

fn label<'a>(c: &'a Container, key: &str) -> Option<&'a str> {
    c.labels.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Splits `registry:5000/shop/api:1.4@sha256:...` into (`registry:5000/shop/api`, Some(`1.4`)).
pub(crate) fn split_image(image: &str) -> (&str, Option<&str>) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(i) => (&no_digest[..slash + i], Some(&no_digest[slash + i + 1..]).filter(|t| !t.is_empty())),
        None => (no_digest, None),
    }
}

fn valid_chars(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Container label keys like `com.example.team` become valid Prometheus label names.
fn sanitize_label_name(key: &str) -> String {
    let mut s = valid_chars(key);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::ContainerId;
    use std::collections::HashMap;

    /// A running container of `image` with `labels`, as inspect gives it.
    pub(crate) fn container(image: &str, labels: &[(&str, &str)]) -> Container {
        Container {
            id: ContainerId::parse(&"a".repeat(64)).unwrap(),
            name: "shop-api-1".into(),
            image: image.into(),
            image_id: "sha256:0123456789abcdef0123".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
            pid: None,
            log_path: None,
            log_driver: "json-file".into(),
            started_at: None,
            upper_dir: None,
            volumes: Vec::new(),
            address: None,
            healthcheck: None,
            finished_at: None,
        }
    }

    #[test]
    fn service_prefers_lookout_label_then_compose_then_image() {
        assert_eq!(service_of(&container("shop/api:1.4.2", &[("lookout.service", "payments")])), "payments");
        assert_eq!(service_of(&container("shop/api:1.4.2", &[("com.docker.compose.service", "web")])), "web");
        assert_eq!(service_of(&container("registry:5000/shop/api:1.4.2", &[])), "api");
        assert_eq!(service_of(&container("busybox", &[])), "busybox");
    }

    #[test]
    fn version_prefers_label_then_tag_then_image_id() {
        assert_eq!(version_of(&container("shop/api:1.4.2", &[("lookout.version", "2.0")])), "2.0");
        assert_eq!(version_of(&container("registry:5000/shop/api:1.4.2", &[])), "1.4.2");
        assert_eq!(version_of(&container("registry:5000/shop/api", &[])), "0123456789ab");
        assert_eq!(version_of(&container("shop/api@sha256:ffff", &[])), "0123456789ab");
    }

    #[test]
    fn only_included_labels_pass_through() {
        let c = container("x:1", &[("team", "core"), ("com.example.env", "prod"), ("secret", "no")]);
        let labels = identity_labels("h1", &c, &["team".into(), "com.example.env".into(), "absent".into()]);
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["host", "container", "container_id", "image", "service", "version", "team", "com_example_env"]
        );
    }
}
