//! `s3://bucket/prefix`: AWS S3 or any S3-compatible server (MinIO, garage). The only module
//! that uses `aws_sdk_s3`.
//!
//! Credentials come from the standard AWS chain (environment, profile, SSO, IMDS). With a custom
//! endpoint, addressing is path-style and request checksums are sent only when required, since
//! several S3-compatible servers reject the SDK's default CRC/aws-chunked uploads.

use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::StoreOptions;
use crate::error::{Error, Result};

/// A model store in an S3 bucket, under an optional key prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    custom_endpoint: bool,
    declared_atomic: bool,
}

/// What [`S3Store::atomic_writes`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// A conditional put is an atomic create-if-absent (a file store; AWS S3; declared).
    Atomic,
    /// The server ignores `If-None-Match` (garage 2.5).
    Ignored,
    /// The server honours it, but whether concurrent writers can both win is not known.
    Unknown,
}

/// Check a bucket name against S3's naming rules, with a suggested fix.
pub fn check_bucket_name(name: &str) -> Result<()> {
    let chars_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && chars_ok && ends_ok && !name.contains("..") {
        return Ok(());
    }
    let fixed: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    Err(Error::Usage(format!(
        "invalid S3 bucket name {name:?}: names are 3-63 characters of lowercase letters, digits, '-' and '.', \
         starting and ending with a letter or digit (try {fixed:?})"
    )))
}

impl S3Store {
    /// Open `bucket/prefix` (the part after `s3://`) and check the bucket is reachable.
    pub async fn open(rest: &str, opts: &StoreOptions) -> Result<S3Store> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket)?;
        let prefix = prefix.trim_matches('/').to_string();
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(c) = &opts.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                None,
                None,
                "modelcast",
            ));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        let custom = endpoint.is_some();
        if let Some(ep) = &endpoint {
            b = b.endpoint_url(ep.clone());
        }
        b = b.force_path_style(opts.path_style.unwrap_or(custom));
        let when_required = match opts.checksums.as_deref() {
            None => custom,
            Some("when_required") => true,
            Some("when_supported") => false,
            Some(other) => {
                return Err(Error::Usage(format!("s3 checksums {other:?}: expected when_required or when_supported")))
            }
        };
        if when_required {
            b = b
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        b = b.timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .operation_attempt_timeout(std::time::Duration::from_secs(30))
                .operation_timeout(std::time::Duration::from_secs(120))
                .build(),
        );
        b = b.retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(opts.max_attempts.unwrap_or(4)),
        );
        let store = S3Store {
            client: Client::from_conf(b.build()),
            bucket: bucket.to_string(),
            prefix,
            custom_endpoint: custom,
            declared_atomic: opts.atomic_writes,
        };
        store
            .client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
            .map_err(|e| store.map_err("open bucket", "", e))?;
        Ok(store)
    }

    /// `s3://bucket/prefix`.
    pub fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn full_key(&self, key: &str) -> Result<String> {
        crate::util::ids::check_key(key)?;
        Ok(if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) })
    }

    fn map_err<E, R>(&self, op: &str, key: &str, e: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let uri = self.uri();
        let status = match &e {
            SdkError::ServiceError(se) => Some(format!("{:?}", se.raw())).and_then(|r| {
                r.split("status: StatusCode(").nth(1).and_then(|s| s.split(')').next()).map(str::to_string)
            }),
            _ => None,
        };
        let code = e.code().map(str::to_string).unwrap_or_default();
        let (message, transient) = match (&e, code.as_str(), status.as_deref()) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => (
                format!("{op} {key}: cannot reach the S3 endpoint ({}); check the endpoint URL and network", DisplayErrorContext(&e)),
                true,
            ),
            (_, "NoSuchBucket", _) | (_, _, Some("404")) if key.is_empty() => (
                format!("bucket {:?} does not exist; create it (aws s3 mb s3://{}) or fix the store URL", self.bucket, self.bucket),
                false,
            ),
            (_, "NoSuchKey", _) | (_, _, Some("404")) => {
                return Error::NotFound(format!("{uri}/{key} does not exist"));
            }
            (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "Forbidden", _) | (_, _, Some("403")) => (
                format!("{op} {key}: access denied ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile, and the bucket policy"),
                false,
            ),
            (_, _, Some("412")) => return Error::AlreadyExists { uri, key: key.to_string() },
            (_, "SlowDown" | "InternalError" | "ServiceUnavailable", _) | (_, _, Some("500" | "502" | "503" | "504")) => {
                (format!("{op} {key}: server busy or failing ({}), retried", DisplayErrorContext(&e)), true)
            }
            _ => (format!("{op} {key}: {}", DisplayErrorContext(&e)), false),
        };
        Error::Store { uri, message, transient }
    }

    /// Put with `If-None-Match: *`, after a HEAD check for servers that ignore the condition.
    pub async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let full = self.full_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(&full).send().await {
            Ok(_) => return Err(Error::AlreadyExists { uri: self.uri(), key: key.to_string() }),
            Err(e) => match self.map_err("head", key, e) {
                Error::NotFound(_) => {}
                other => return Err(other),
            },
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .content_type(content_type(key))
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| self.map_err("put", key, e))?;
        Ok(())
    }

    /// Whether `PUT` with `If-None-Match: *` is an atomic create-if-absent here, which makes
    /// [`S3Store::put_if_absent`] safe between concurrent writers.
    ///
    /// A server that accepts a second conditional put of an existing key ignores the header
    /// (garage 2.5): checked with a probe under `probe_prefix` (deleted after). Honouring it one
    /// request at a time does not make it atomic (s3s-fs 0.14 checks, then writes, and lets
    /// concurrent writers all win), and no probe can prove atomicity: it is trusted for AWS S3
    /// (no custom endpoint) and where the operator declares it (`--s3-atomic-writes`, MinIO).
    pub async fn atomic_writes(&self, probe_prefix: &str) -> Result<Atomicity> {
        let id = crate::artifact::new_version(chrono::Utc::now(), probe_prefix.as_bytes());
        let key = format!("{probe_prefix}/{id}");
        let full = self.full_key(&key)?;
        let put = || {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from_static(b"probe"))
                .send()
        };
        put().await.map_err(|e| self.map_err("put", &key, e))?;
        let second = put().await;
        let _ = self.client.delete_object().bucket(&self.bucket).key(&full).send().await;
        Ok(match (second, self.custom_endpoint, self.declared_atomic) {
            (Ok(_), _, _) => Atomicity::Ignored,
            (Err(_), false, _) | (Err(_), true, true) => Atomicity::Atomic,
            (Err(_), true, false) => Atomicity::Unknown,
        })
    }

    /// Delete an object (internal keys only: artifacts are never deleted).
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.map_err("delete", key, e))?;
        Ok(())
    }

    /// Get an object's bytes.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.map_err("get", key, e))?;
        let body = out.body.collect().await.map_err(|e| Error::Store {
            uri: self.uri(),
            message: format!("get {key}: reading body: {e}"),
            transient: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    /// Keys under `prefix` (relative to the store prefix).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full_prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}/{prefix}", self.prefix) };
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full_prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map_err("list", prefix, e))?;
            for obj in page.contents() {
                if let Some(k) = obj.key() {
                    out.push(k[strip.min(k.len())..].to_string());
                }
            }
        }
        Ok(out)
    }
}

/// The `Content-Type` of a key: SVG reports open in a browser straight from the bucket.
fn content_type(key: &str) -> &'static str {
    if key.ends_with(".svg") {
        "image/svg+xml"
    } else if key.ends_with(".json") {
        "application/json"
    } else if key.ends_with(".pmml") {
        "application/xml"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(check_bucket_name("wine-models").is_ok());
        assert!(check_bucket_name("a.b-c1").is_ok());
        let e = check_bucket_name("wines_models").unwrap_err().to_string();
        assert!(e.contains("wines-models"), "{e}");
        for bad in ["ab", "Upper", "-lead", "trail-", "a..b"] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
