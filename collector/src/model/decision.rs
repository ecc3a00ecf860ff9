//! A decision as the log keeps it: what was decided (`Kind`), about what (`Subject`: a container, a
//! service or a release), why, on which rule and inputs, and how it ended (`Outcome`). Plain data.

use serde::{Serialize, Serializer};

/// What was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Restart,
    /// A restart held back: most of the service failed together (a shared dependency).
    RestartHeld,
    /// A restart waiting for `max_unavailable`.
    RestartWaiting,
    /// The restart budget is spent.
    RestartGivenUp,
    /// A rollout gate's verdict.
    Gate,
    Scale,
    /// A scale decision held while a gate on the service runs.
    ScaleHeld,
}

/// How a decision ended, or where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Sent, not answered yet (a restart command, a webhook delivery).
    Pending,
    Ok,
    Failed,
    NotCarriedOut,
    DryRun,
    /// Recorded only: nothing to carry out.
    Recorded,
    Delivered,
    NotDelivered,
    /// A gate's verdict.
    Pass,
    Fail,
    Wait,
}

macro_rules! names {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
            /// The name the decision log, the API and `lookout_collector_decisions_total` use.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<$t> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Kind {
    Restart = "restart",
    RestartHeld = "restart_held",
    RestartWaiting = "restart_waiting",
    RestartGivenUp = "restart_given_up",
    Gate = "gate",
    Scale = "scale",
    ScaleHeld = "scale_held",
});

names!(Outcome {
    Pending = "pending",
    Ok = "ok",
    Failed = "failed",
    NotCarriedOut = "not_carried_out",
    DryRun = "dry_run",
    Recorded = "recorded",
    Delivered = "delivered",
    NotDelivered = "not_delivered",
    Pass = "pass",
    Fail = "fail",
    Wait = "wait",
});

/// What a decision is about, besides its service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Container {
        host: String,
        container: String,
        container_id: String,
    },
    Service,
    /// A version of the service, judged by gate `gate`.
    Release {
        version: String,
        gate: String,
    },
}

/// One decision; `rule` and `inputs` are JSON, so that it can be shown and replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub id: i64,
    pub time_ms: i64,
    pub kind: Kind,
    pub service: String,
    pub subject: Subject,
    pub reason: String,
    pub rule: serde_json::Value,
    pub inputs: serde_json::Value,
    pub outcome: Outcome,
    pub detail: String,
    pub settled_ms: Option<i64>,
}

impl Decision {
    /// A decision at `time_ms`, settled at once unless its outcome is pending.
    pub fn new(time_ms: i64, kind: Kind, service: &str, subject: Subject, reason: String, outcome: Outcome) -> Self {
        Decision {
            id: 0,
            time_ms,
            kind,
            service: service.to_string(),
            subject,
            reason,
            rule: serde_json::Value::Null,
            inputs: serde_json::Value::Null,
            outcome,
            detail: String::new(),
            settled_ms: (outcome != Outcome::Pending).then_some(time_ms),
        }
    }

    /// The (host, container, container_id) columns the log and the API show: a release shows as
    /// `service@version` with its gate's id.
    pub fn columns(&self) -> (&str, String, &str) {
        match &self.subject {
            Subject::Container { host, container, container_id } => (host, container.clone(), container_id),
            Subject::Service => ("", String::new(), ""),
            Subject::Release { version, gate } => ("", format!("{}@{version}", self.service), gate),
        }
    }

    /// The subject back from the log's columns.
    pub fn subject_from(kind: Kind, host: String, container: String, container_id: String) -> Subject {
        match kind {
            Kind::Gate => Subject::Release {
                version: container.split_once('@').map(|(_, v)| v.to_string()).unwrap_or_default(),
                gate: container_id,
            },
            Kind::Scale | Kind::ScaleHeld => Subject::Service,
            _ => Subject::Container { host, container, container_id },
        }
    }

    /// The container id, for decisions about a container.
    pub fn container_id(&self) -> Option<&str> {
        match &self.subject {
            Subject::Container { container_id, .. } => Some(container_id),
            _ => None,
        }
    }
}

/// In the API's shape: flat, with `host`, `container` and `container_id` as the log has them.
impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (host, container, container_id) = self.columns();
        let mut st = s.serialize_struct("Decision", 13)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("time_ms", &self.time_ms)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("service", &self.service)?;
        st.serialize_field("host", host)?;
        st.serialize_field("container", &container)?;
        st.serialize_field("container_id", container_id)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("rule", &self.rule)?;
        st.serialize_field("inputs", &self.inputs)?;
        st.serialize_field("outcome", &self.outcome)?;
        st.serialize_field("detail", &self.detail)?;
        st.serialize_field("settled_ms", &self.settled_ms)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_a_release_keeps_its_version_and_gate() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        let d = Decision::new(
            5,
            Kind::Gate,
            "api",
            Subject::Release { version: "2".into(), gate: "g1".into() },
            "why".into(),
            Outcome::Pass,
        );
        let (host, container, id) = d.columns();
        assert_eq!((host, container.as_str(), id), ("", "api@2", "g1"));
        assert_eq!(Decision::subject_from(Kind::Gate, String::new(), container, id.into()), d.subject);
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(
            (j["kind"].as_str(), j["outcome"].as_str(), j["container"].as_str()),
            (Some("gate"), Some("pass"), Some("api@2"))
        );
    }
}
