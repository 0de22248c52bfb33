//! TLS in front of the local Postgres and Redis, which speak plain TCP here: a private test
//! CA, a server certificate for `127.0.0.1`, and a proxy that terminates TLS the way RDS
//! and ElastiCache do (Postgres: after its `SSLRequest`; Redis: from the first byte) and
//! forwards the plain bytes to the real server. The app under test must verify the
//! certificate against the CA it is given, or refuse to connect.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A private CA and a certificate it issued for `127.0.0.1` and `localhost`.
pub struct TestPki {
    /// The CA certificate, PEM, written to a file for `*_CA_FILE`.
    pub ca_file: PathBuf,
    acceptor: TlsAcceptor,
}

impl TestPki {
    /// A new CA (its certificate written under `dir`) and a server certificate.
    pub fn new(dir: &Path, name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("user-service test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        std::fs::create_dir_all(dir).expect("PKI dir");
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca_cert.pem()).expect("write the CA file");

        let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server TLS config");
        Self {
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }
}

/// How a protocol starts TLS.
#[derive(Debug, Clone, Copy)]
pub enum TlsStart {
    /// Postgres: the client sends an 8-byte `SSLRequest`, the server answers `S`.
    PostgresSslRequest,
    /// Redis (`rediss://`): TLS from the first byte.
    Immediate,
}

/// A TLS-terminating proxy on `127.0.0.1:<random port>` in front of a plain `upstream`.
pub struct TlsProxy {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The `SSLRequest` code (Postgres protocol, 80877103).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl TlsProxy {
    /// Starts terminating TLS with `pki`'s certificate and forwarding to `upstream`.
    pub async fn start(pki: &TestPki, start: TlsStart, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let acceptor = pki.acceptor.clone();
        let counter = Arc::clone(&handshakes);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let _ = serve(client, acceptor, start, upstream, &counter).await;
                });
            }
        });
        Self {
            addr,
            handshakes,
            task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TLS handshakes completed so far (proof that the client spoke TLS).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    acceptor: TlsAcceptor,
    start: TlsStart,
    upstream: SocketAddr,
    handshakes: &AtomicUsize,
) -> std::io::Result<()> {
    if let TlsStart::PostgresSslRequest = start {
        let mut request = [0u8; 8];
        client.read_exact(&mut request).await?;
        if request != SSL_REQUEST {
            // A client that does not ask for TLS gets nothing in plain text.
            return Ok(());
        }
        client.write_all(b"S").await?;
    }
    let mut tls = acceptor.accept(client).await?;
    handshakes.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(upstream).await?;
    copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}
