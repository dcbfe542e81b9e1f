//! TLS on the JSON-RPC port, optionally mutual with SDK client certificates.
//!
//! Data flow: at start, [`TlsServer::new`] builds one rustls configuration (ring provider) from
//! the `rpc.tls` files. When `requireClientCert` is set it installs a [`ChainClientVerifier`],
//! which admits a client only if the chain it presents, `[client, member CA]`, passes
//! [`verify_client_chain`] against the genesis `caCert` and the node's [`RevocationList`]. The
//! accept loop ([`spawn`]) runs every handshake in a task of its own, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent peer never holds up other clients; a failed
//! handshake is logged and counted by reason; an established stream is served by jsonrpsee (HTTP
//! and WebSocket) until it closes or the server stops.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use bcos_sdk::{
    config::{RpcTlsConfig, TlsFilesError},
    pki::{PkiError, RevocationList, ServerIdentity, verify_client_chain},
};
use jsonrpsee::server::{Methods, Server, ServerConfig as RpcServerConfig, ServerHandle, StopHandle};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime},
    server::{
        NoServerSessionStorage,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::metrics::RpcTlsMetrics;

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of file descriptors, say) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const TARGET: &str = "rpc::tls";

/// Why TLS on the JSON-RPC port cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain or key file is unusable.
    #[error(transparent)]
    Files(#[from] TlsFilesError),
    /// Client certificates are required but the genesis names no chain CA to check them against.
    #[error("rpc.tls.requireClientCert: the genesis names no chain CA (caCert) to check client certificates against")]
    NoChainCa,
    /// The genesis chain CA is not a usable trust anchor.
    #[error("rpc.tls.requireClientCert: the genesis caCert is not a usable trust anchor: {0}")]
    BadChainCa(rustls::Error),
    /// rustls refused the certificate chain or key.
    #[error("rpc.tls: {0}")]
    Rustls(rustls::Error),
}

/// What the JSON-RPC server needs to serve TLS: the acceptor and its metrics.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    metrics: RpcTlsMetrics,
}

impl TlsServer {
    /// Loads the `rpc.tls` files and, if client certificates are required, checks them against
    /// `chain_ca` (DER of the genesis `caCert`) and the revoked serials in `revoked`.
    pub fn new(
        config: &RpcTlsConfig,
        chain_ca: Option<Vec<u8>>,
        revoked: RevocationList,
        metrics: RpcTlsMetrics,
    ) -> Result<Self, TlsError> {
        let identity = config.load_identity()?;
        let verifier = if config.require_client_cert {
            let chain_ca = chain_ca.ok_or(TlsError::NoChainCa)?;
            Some(ChainClientVerifier::new(chain_ca, revoked).map_err(TlsError::BadChainCa)?)
        } else {
            None
        };
        let config = server_config(&identity, verifier).map_err(TlsError::Rustls)?;
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), metrics })
    }

    fn refused(&self, peer: SocketAddr, reason: &'static str, error: &dyn std::fmt::Display) {
        self.metrics.handshake_failures.with_label_values(&[reason]).inc();
        if is_certificate_refusal(reason) {
            tracing::info!(target: TARGET, %peer, reason, %error, "TLS client refused");
        } else {
            tracing::debug!(target: TARGET, %peer, reason, %error, "TLS handshake failed");
        }
    }
}

fn server_config(
    identity: &ServerIdentity,
    verifier: Option<ChainClientVerifier>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let mutual = verifier.is_some();
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(Arc::new(verifier)),
        None => builder.with_no_client_auth(),
    };
    let certs = identity.certs().iter().map(|cert| CertificateDer::from(cert.der().to_vec())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.private_key_der()));
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if mutual {
        // A resumed session skips the client certificate check. Without resumption every
        // connection checks it again, so a revocation or an expiry bites on the next connection.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// Admits SDK clients whose chain `[client, member CA]` verifies to the chain CA, with the
/// revocation list as it is at the handshake.
#[derive(Debug)]
pub struct ChainClientVerifier {
    chain_ca: Vec<u8>,
    hints: Vec<DistinguishedName>,
    revoked: RevocationList,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ChainClientVerifier {
    /// A verifier for clients of the chain whose CA certificate is `chain_ca` (DER).
    pub fn new(chain_ca: Vec<u8>, revoked: RevocationList) -> Result<Self, rustls::Error> {
        // Parsing the CA as a trust anchor also yields the subject clients are told to chain to.
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(chain_ca.clone()))?;
        Ok(Self {
            chain_ca,
            hints: roots.subjects(),
            revoked,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }
}

impl ClientCertVerifier for ChainClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Some clients send the root as well; it adds nothing when it is the chain CA itself.
        let intermediates = match intermediates {
            [member, root] if root.as_ref() == self.chain_ca.as_slice() => std::slice::from_ref(member),
            all => all,
        };
        let chain: Vec<&[u8]> =
            intermediates.iter().map(AsRef::as_ref).chain(std::iter::once(end_entity.as_ref())).collect();
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        match verify_client_chain(&self.chain_ca, &chain, now, &self.revoked) {
            Ok(client) => {
                tracing::debug!(target: TARGET, name = client.name(), serial = %client.serial(), member = client.member().id, "client certificate accepted");
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => {
                tracing::debug!(target: TARGET, error = %e, "client certificate refused");
                Err(rustls::Error::InvalidCertificate(certificate_error(e)))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls error for a refused chain: the precise kinds where rustls has one (they choose the
/// alert the client sees), the PKI error itself otherwise.
fn certificate_error(error: PkiError) -> CertificateError {
    match error {
        PkiError::Expired { .. } => CertificateError::Expired,
        PkiError::NotYetValid { .. } => CertificateError::NotValidYet,
        PkiError::Revoked { .. } => CertificateError::Revoked,
        PkiError::BadSignature { .. } => CertificateError::BadSignature,
        PkiError::IssuerMismatch { .. } => CertificateError::UnknownIssuer,
        PkiError::KeyUsage { .. } | PkiError::UnexpectedUsage { .. } => CertificateError::InvalidPurpose,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}

/// The metric label for a failed handshake.
fn failure_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "expired"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "not_yet_valid",
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => "revoked",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::AlertReceived(_) => "client_alert",
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::NoApplicationProtocol => "protocol",
        _ => "tls",
    }
}

/// A failed handshake in words: a refused chain by what the PKI check found (rustls would print
/// it with `Debug`), anything else as it is.
fn describe(error: &std::io::Error) -> String {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        _ => error.to_string(),
    }
}

/// Whether the reason means this node refused the client's certificate (worth an info log);
/// the rest is noise from scanners, probes and broken clients.
fn is_certificate_refusal(reason: &str) -> bool {
    matches!(reason, "no_certificate" | "expired" | "not_yet_valid" | "revoked" | "bad_certificate")
}

/// Serves `methods` over TLS on `listener` until the returned handle is stopped; the handle's
/// `stopped()` completes once every connection has finished.
pub(super) fn spawn(
    listener: TcpListener,
    tls: TlsServer,
    config: RpcServerConfig,
    methods: Methods,
    max_connections: u32,
) -> ServerHandle {
    let (stop, handle) = jsonrpsee::server::stop_channel();
    tokio::spawn(accept_loop(listener, tls, config, methods, stop, max_connections));
    handle
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsServer,
    config: RpcServerConfig,
    methods: Methods,
    stop: StopHandle,
    max_connections: u32,
) {
    let services = Server::builder().set_config(config).to_service_builder();
    // Connections in their handshake count too: they hold sockets and memory as well.
    let connections = Arc::new(Semaphore::new(usize::try_from(max_connections).unwrap_or(usize::MAX)));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stop.clone().shutdown() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(target: TARGET, %peer, max_connections, "connection limit reached; closing");
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(target: TARGET, error = %e, "cannot set TCP_NODELAY");
        }
        let service = services.clone().build(methods.clone(), stop.clone());
        let (tls, stop) = (tls.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp));
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return tls.refused(peer, failure_reason(&e), &describe(&e)),
                    Err(elapsed) => return tls.refused(peer, "timeout", &elapsed),
                },
                () = stop.clone().shutdown() => return,
            };
            if let Err(e) = jsonrpsee::server::serve_with_graceful_shutdown(stream, service, stop.shutdown()).await {
                tracing::debug!(target: TARGET, %peer, error = %e, "connection closed with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests;
