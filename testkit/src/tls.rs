//! TLS for test servers on 127.0.0.1: a CA made for the tests with the
//! `openssl` CLI (`scripts/test-env.sh` installs it), and a server
//! certificate it signs for `127.0.0.1` and `localhost`.
//!
//! [`Identity::shared`] is the one every test trusts, made once per machine
//! and kept in the temp dir: a client that holds its CA per process (as
//! libgit2 does) can then talk to every test server of that process.
//! [`Identity::generate`] makes one of its own, which nobody trusts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a server certificate (for `127.0.0.1` and `localhost`) signed by
/// it, as PEM files.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The CA's certificate: what a client must trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Where [`Identity::shared`] lives; the suffix changes with what it holds.
const SHARED: &str = "slipway-test-tls-1";

impl Identity {
    /// The kit's identity, made on first use and kept in the temp dir for
    /// every later test process.
    pub fn shared() -> Identity {
        static SHARED_IDENTITY: OnceLock<Identity> = OnceLock::new();
        SHARED_IDENTITY
            .get_or_init(|| {
                let dir = std::env::temp_dir().join(SHARED);
                if !dir.join("server.pem").exists() {
                    // Made aside and renamed into place, so a test process
                    // never sees half of it; the first rename wins.
                    let aside = tempfile::Builder::new()
                        .prefix(&format!("{SHARED}."))
                        .tempdir()
                        .expect("temp dir");
                    Identity::generate(aside.path());
                    let aside = aside.keep();
                    if std::fs::rename(&aside, &dir).is_err() {
                        let _ = std::fs::remove_dir_all(&aside);
                    }
                }
                Identity::in_dir(&dir)
            })
            .clone()
    }

    /// Makes a CA of its own and a server certificate in `dir`.
    pub fn generate(dir: &Path) -> Identity {
        let identity = Identity::in_dir(dir);
        let key = dir.join("ca.key");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(dir, |c| {
            c.args(["req", "-x509", "-new", "-nodes", "-days", "3650"])
                .args(ec)
                .args(["-subj", "/CN=Slipway test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&identity.ca)
        });
        let request = dir.join("server.csr");
        openssl(dir, |c| {
            c.args(["req", "-new", "-nodes"])
                .args(ec)
                .args(["-subj", "/CN=127.0.0.1"])
                .arg("-keyout")
                .arg(&identity.key)
                .arg("-out")
                .arg(&request)
        });
        let extensions = dir.join("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n",
        )
        .expect("write the extensions");
        let serial = format!(
            "0x{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos()
        );
        openssl(dir, |c| {
            c.args(["x509", "-req", "-days", "3650", "-set_serial", &serial])
                .arg("-in")
                .arg(&request)
                .arg("-CA")
                .arg(&identity.ca)
                .arg("-CAkey")
                .arg(&key)
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&identity.cert)
        });
        identity
    }

    fn in_dir(dir: &Path) -> Identity {
        Identity {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    /// A rustls server configuration presenting the certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .expect("the server certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("the server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a certificate and its key");
        Arc::new(config)
    }
}

/// Runs `openssl` with the arguments `args` adds, in `dir`; panics with its
/// stderr when it fails.
fn openssl(dir: &Path, args: impl FnOnce(&mut Command) -> &mut Command) {
    let mut command = Command::new("openssl");
    command.current_dir(dir);
    args(&mut command);
    let out = command
        .output()
        .expect("openssl runs (scripts/test-env.sh installs it)");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
