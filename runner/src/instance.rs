//! Which runner process this is. Two processes started with the same token
//! are two runners to the API: each workdir holds an instance id of its own,
//! kept across restarts (so a restarted runner resumes what it held) and
//! locked while a process uses it (so two processes never share one).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot use the workdir {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the workdir {path} is in use by another runner process; give each runner a workdir of its own"
    )]
    Taken { path: PathBuf },
}

/// The instance of one runner process, holding its workdir's lock.
#[derive(Debug)]
pub struct Instance {
    pub id: String,
    /// Held open for as long as the process runs: the lock is the file's.
    _lock: File,
}

impl Instance {
    /// Reads (or creates) the instance id of `workdir` and locks it.
    pub fn open(workdir: &Path) -> Result<Self, InstanceError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |cause| InstanceError::Io { path, cause }
        };
        std::fs::create_dir_all(workdir).map_err(io(workdir))?;
        let lock_path = workdir.join("instance.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(InstanceError::Taken {
                    path: workdir.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(cause)) => {
                return Err(InstanceError::Io {
                    path: lock_path,
                    cause,
                })
            }
        }
        let id_path = workdir.join("instance");
        let mut id = String::new();
        match File::open(&id_path) {
            Ok(mut file) => {
                file.read_to_string(&mut id).map_err(io(&id_path))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(&id_path)(err)),
        }
        let id = id.trim().to_owned();
        let id = if is_instance_id(&id) {
            id
        } else {
            let id = new_id();
            let aside = id_path.with_extension("tmp");
            let mut file = File::create(&aside).map_err(io(&aside))?;
            file.write_all(id.as_bytes()).map_err(io(&aside))?;
            file.sync_all().map_err(io(&aside))?;
            std::fs::rename(&aside, &id_path).map_err(io(&id_path))?;
            id
        };
        Ok(Self { id, _lock: lock })
    }
}

fn is_instance_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 128 random bits, as hex, from the operating system.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workdir_keeps_its_instance_and_lends_it_to_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::open(dir.path()).unwrap();
        assert!(is_instance_id(&first.id));
        assert!(matches!(
            Instance::open(dir.path()),
            Err(InstanceError::Taken { .. })
        ));
        let id = first.id.clone();
        drop(first);
        assert_eq!(Instance::open(dir.path()).unwrap().id, id);

        let other = tempfile::tempdir().unwrap();
        assert_ne!(Instance::open(other.path()).unwrap().id, id);
    }
}
