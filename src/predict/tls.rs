//! TLS for the request servers (`--tls-cert`, `--tls-key`): the PEM files read and checked at
//! start-up (a bad file is named within seconds), a rustls server config on the aws-lc-rs
//! provider (the one the S3 client already brings), and an accept loop for axum that does each
//! handshake in its own task, so a client that never finishes one holds up no other.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// The certificate chain and key, as read.
pub struct Identity {
    /// The PEM certificate chain (leaf first).
    pub cert_pem: Vec<u8>,
    /// The PEM private key.
    pub key_pem: Vec<u8>,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { <certificate and key> }")
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.cert_pem == other.cert_pem
    }
}

impl Eq for Identity {}

impl Identity {
    /// Read and check `cert` and `key`; an error names the flag and the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Identity> {
        let read = |p: &Path, flag: &str| {
            std::fs::read(p).map_err(|e| Error::Usage(format!("{flag}: cannot read {}: {e}", p.display())))
        };
        let (cert_pem, key_pem) = (read(cert, "--tls-cert")?, read(key, "--tls-key")?);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Usage(format!("--tls-cert: {} is not a PEM certificate chain: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(Error::Usage(format!("--tls-cert: {} holds no certificate", cert.display())));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Error::Usage(format!("--tls-key: {} is not a PEM private key: {e}", key.display())))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| Error::Usage(format!("--tls-key: {} does not go with --tls-cert: {e}", key.display())))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Identity { cert_pem, key_pem, config: Arc::new(config) })
    }

    /// The rustls config of the HTTP server.
    pub fn http_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A TLS listener for `axum::serve`: connections come handshaken from the accept task.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `tcp` until `stop` turns true, each handshake in its own task.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>, mut stop: watch::Receiver<bool>) -> TlsListener {
        let local = tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // the accept task stopped: no more connections (the server is draining)
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
