//! Why a Kafka connection fails, in words a user can act on, within seconds.
//!
//! librdkafka reports authentication, TLS and transport failures through the client's error
//! callback while a request simply waits for its timeout. [`Watch`] (the producer's client
//! context) remembers the last such report, and [`diagnose`] turns it into a message naming the
//! setting to fix: `sasl.username` and `sasl.mechanisms` (never the password), `ssl.ca.location`,
//! `bootstrap.servers`.

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::kafka::KafkaConfig;

/// The client-level errors librdkafka reported, the latest per error code (so the one that
/// explains a failure is not pushed out by the "brokers down" that follow it), shared with the
/// [`super::Kafka`] that owns the client.
#[derive(Clone, Default)]
pub struct Watch {
    recent: Arc<Mutex<Vec<(RDKafkaErrorCode, String)>>>,
}

impl Watch {
    /// The most telling diagnosis of the errors reported so far: a fatal one (authentication,
    /// TLS, name resolution) wins over "brokers down", which is what librdkafka says next.
    pub fn diagnosis(&self, cfg: &KafkaConfig) -> Option<(Severity, String)> {
        let recent = self.recent.lock().ok()?;
        let all: Vec<(Severity, String)> = recent.iter().filter_map(|(c, r)| diagnose(*c, r, cfg)).collect();
        let transient = recent.iter().rev().filter(|(c, _)| *c != RDKafkaErrorCode::AllBrokersDown);
        let specific = transient.filter_map(|(c, r)| diagnose(*c, r, cfg)).next();
        all.iter().find(|(s, _)| *s == Severity::Fatal).cloned().or(specific).or(all.last().cloned())
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "librdkafka error");
        if let (Some(code), Ok(mut recent)) = (error.rdkafka_error_code(), self.recent.lock()) {
            recent.retain(|(c, _)| *c != code);
            recent.push((code, reason.to_string()));
        }
    }
}

/// How sure a diagnosis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Will not fix itself (wrong credentials, untrusted certificate): report now.
    Fatal,
    /// May be a moment's outage (connection refused): report after a short grace period.
    Transient,
}

/// A message naming what to fix for librdkafka error `code` with `reason`, or `None` when the
/// error says nothing about the configuration.
pub fn diagnose(code: RDKafkaErrorCode, reason: &str, cfg: &KafkaConfig) -> Option<(Severity, String)> {
    let prop = |k: &str| cfg.properties.get(k).map(String::as_str);
    let servers = prop("bootstrap.servers").unwrap_or("(not set)");
    let lower = reason.to_ascii_lowercase();
    match code {
        RDKafkaErrorCode::Authentication => Some((
            Severity::Fatal,
            format!(
                "authentication failed for sasl.username {:?} with sasl.mechanisms {}: check the API key and \
                 secret (sasl.username, sasl.password) and the mechanism ({reason})",
                prop("sasl.username").unwrap_or(""),
                prop("sasl.mechanisms").or(prop("sasl.mechanism")).unwrap_or("GSSAPI (the default)")
            ),
        )),
        _ if lower.contains("certificate verify failed") || lower.contains("certificate_verify_failed") => Some((
            Severity::Fatal,
            format!(
                "TLS certificate verification failed: the broker's certificate is not signed by a CA in \
                 ssl.ca.location ({}); check ssl.ca.location ({reason})",
                prop("ssl.ca.location").unwrap_or("not set: the system CA store")
            ),
        )),
        RDKafkaErrorCode::SSL => Some((
            Severity::Fatal,
            format!(
                "TLS handshake with {servers} failed: check security.protocol ({}) and that bootstrap.servers \
                 is the TLS listener ({reason})",
                prop("security.protocol").unwrap_or("PLAINTEXT")
            ),
        )),
        RDKafkaErrorCode::Resolve => Some((
            Severity::Fatal,
            format!("cannot resolve the host of bootstrap.servers {servers}: check the host name ({reason})"),
        )),
        RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
            if lower.contains("connection refused") || lower.contains("timed out") || code == RDKafkaErrorCode::AllBrokersDown =>
        {
            Some((
                Severity::Transient,
                format!("cannot connect to bootstrap.servers {servers}: check the host and port, and that the broker runs ({reason})"),
            ))
        }
        RDKafkaErrorCode::BrokerTransportFailure if lower.contains("disconnected") => Some((
            Severity::Transient,
            format!(
                "the broker at {servers} closed the connection: check security.protocol ({}) against the \
                 listener, and the credentials ({reason})",
                prop("security.protocol").unwrap_or("PLAINTEXT")
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KafkaConfig {
        let mut c = KafkaConfig::for_tests("broker.example:9093");
        c.properties.insert("sasl.username".into(), "ana".into());
        c.properties.insert("sasl.password".into(), "s3cret-value".into());
        c.properties.insert("sasl.mechanisms".into(), "SCRAM-SHA-512".into());
        c.properties.insert("ssl.ca.location".into(), "/etc/ca.pem".into());
        c
    }

    #[test]
    fn each_failure_names_the_setting_to_fix_and_never_the_secret() {
        let cases = [
            (
                RDKafkaErrorCode::Authentication,
                "SASL authentication error: invalid credentials",
                "sasl.username \"ana\"",
            ),
            (
                RDKafkaErrorCode::SSL,
                "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
                "ssl.ca.location (/etc/ca.pem)",
            ),
            (RDKafkaErrorCode::Resolve, "Failed to resolve 'broker.example:9093'", "cannot resolve"),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "Connect to ipv4#127.0.0.1:9 failed: Connection refused",
                "bootstrap.servers broker.example:9093",
            ),
        ];
        for (code, reason, want) in cases {
            let (_, msg) = diagnose(code, reason, &cfg()).unwrap();
            assert!(msg.contains(want), "{msg}");
            assert!(!msg.contains("s3cret-value"), "{msg}");
        }
        assert_eq!(diagnose(RDKafkaErrorCode::Authentication, "x", &cfg()).unwrap().0, Severity::Fatal);
        assert_eq!(
            diagnose(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down", &cfg()).unwrap().0,
            Severity::Transient
        );
        assert!(diagnose(RDKafkaErrorCode::MessageTimedOut, "x", &cfg()).is_none());
    }
}
