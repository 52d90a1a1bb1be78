//! The JWT secret of a `slipway up` data directory: created on first start
//! (mode 0600, 32 random bytes as hex), read by `up` and by `token`.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::TokenConfig;

/// The secret's file name in the data directory.
pub const FILE_NAME: &str = "jwt-secret";

/// The path of the secret in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the secret of `data_dir`, creating it when there is none. Returns
/// the secret and whether it was created now.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let path = path(data_dir);
    if path.exists() {
        return Ok((read(&path)?, false));
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read random bytes from /dev/urandom")?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create the JWT secret {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the JWT secret {}", path.display()))?;
    Ok((secret.into_bytes(), true))
}

/// Reads a secret file; a trailing newline is not part of the secret.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the JWT secret {}", path.display()))?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.len() < 16 {
        bail!(
            "the JWT secret in {} is {} bytes long; it must have at least 16",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

/// The secret `slipway token` signs with: `--jwt-secret`, `--jwt-secret-file`,
/// or the one in `--data-dir`.
pub fn for_token(config: &TokenConfig) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        if secret.len() < 16 {
            bail!(
                "--jwt-secret is {} bytes long; it must have at least 16",
                secret.len()
            );
        }
        return Ok(secret.as_bytes().to_vec());
    }
    if let Some(file) = &config.jwt_secret_file {
        return read(file);
    }
    let path = path(&config.data_dir);
    if !path.exists() {
        bail!(
            "no JWT secret at {}: run `slipway up` first (it creates one), point --data-dir at \
             its data directory, or give --jwt-secret / --jwt-secret-file",
            path.display()
        );
    }
    read(&path)
}
