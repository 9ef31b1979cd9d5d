//! Opens the probe's connections (TCP, then TLS with rustls) and runs one HTTP/1.1
//! exchange on each, keeping the upgraded stream of a 101.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::diagnose::Failure;
use super::target::Target;

/// Most body bytes kept from one response (engine.io answers are small; an HTML error
/// page is cut).
const BODY_KEEP_BYTES: usize = 64 * 1024;

/// A connection the probe can speak HTTP over: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Opens a fresh connection to the target for each request, as a browser's socket.io
/// client may (each request can land on another backend behind a load balancer).
pub struct Connector {
    host: String,
    port: u16,
    host_port: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Roots loaded from the system store (for the message when none were found).
    roots: usize,
}

impl Connector {
    /// Prepares connections to `target`; for https, loads the system roots unless
    /// `insecure`, in which case any certificate is accepted (signatures still checked).
    ///
    /// # Errors
    /// The host is not a valid TLS server name.
    pub fn new(target: &Target, insecure: bool) -> Result<Self, String> {
        let mut roots = 0;
        let tls = if target.https {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| format!("'{}' is not a valid TLS server name", target.host))?;
            let (config, n) = tls_config(insecure);
            roots = n;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Connector {
            host: target.host.clone(),
            port: target.port,
            host_port: target.host_port(),
            tls,
            roots,
        })
    }

    /// Resolves the host, connects to the first address that accepts, and does the TLS
    /// handshake for https.
    ///
    /// # Errors
    /// [`Failure::Connect`] or [`Failure::Tls`].
    pub async fn connect(&self) -> Result<Box<dyn Io>, Failure> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::Connect(format!("cannot resolve {}: {e}", self.host)))?;
        let mut errors = Vec::new();
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => errors.push((addr, e)),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            let why = match errors.as_slice() {
                [] => "the name has no address".to_string(),
                [(_, e)] => e.to_string(),
                many => many
                    .iter()
                    .map(|(a, e)| format!("{a}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            Failure::Connect(format!("cannot connect to {}: {why}", self.host_port))
        })?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        match connector.connect(name.clone(), tcp).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => {
                let certificate = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                let mut message = format!("TLS handshake with {} failed: {e}", self.host_port);
                if certificate && self.roots == 0 {
                    message.push_str(" (no system root certificates were found)");
                }
                Err(Failure::Tls {
                    message,
                    certificate,
                })
            }
        }
    }
}

fn tls_config(insecure: bool) -> (ClientConfig, usize) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports rustls' default protocol versions");
    let (mut config, roots) = if insecure {
        let verifier = Arc::new(AcceptAnyCertificate(provider));
        (
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
            0,
        )
    } else {
        let mut store = RootCertStore::empty();
        // Unreadable system certificates are skipped: the ones that load still verify.
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(native.certs);
        (
            builder.with_root_certificates(store).with_no_client_auth(),
            added,
        )
    };
    // The websocket upgrade needs HTTP/1.1; a GFE would otherwise be free to pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (config, roots)
}

/// `--insecure`: any certificate chain is accepted; handshake signatures are still
/// verified so the session keys belong to the presented certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTP response as the probe needs it.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most [`BODY_KEEP_BYTES`] of the body; empty on a 101.
    pub body: Bytes,
    /// The connection after a 101, ready for websocket frames.
    pub upgraded: Option<hyper::upgrade::Upgraded>,
}

/// Sends `req` on `io` (header names in title case, as browsers write them) and reads
/// the answer; on a 101 the upgraded connection is returned instead of a body.
///
/// # Errors
/// [`Failure::NoResponse`] when the connection ends before a response head.
pub async fn exchange(io: Box<dyn Io>, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
    let (mut send, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::NoResponse(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let mut resp = send
        .send_request(req)
        .await
        .map_err(|e| Failure::NoResponse(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if status == 101 {
        let upgraded = hyper::upgrade::on(&mut resp)
            .await
            .map_err(|e| Failure::NoResponse(error_chain(&e)))?;
        return Ok(Answer {
            status,
            headers,
            body: Bytes::new(),
            upgraded: Some(upgraded),
        });
    }
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    // A body cut short still says something (an engine.io error is a few bytes), so a
    // read error ends the body instead of failing the step.
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            let room = BODY_KEEP_BYTES - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
            if kept.len() == BODY_KEEP_BYTES {
                break;
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(kept),
        upgraded: None,
    })
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
