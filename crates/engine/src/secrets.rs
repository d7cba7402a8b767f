//! The API key at rest: XChaCha20-Poly1305 (RustCrypto), the connection's id bound as
//! associated data, each ciphertext tagged with the id of the master key that sealed it.
//!
//! The master key comes from `ACCESSRAIL_MASTER_KEY` (base64 of 32 bytes) or
//! `ACCESSRAIL_MASTER_KEY_FILE`, or is generated on first use into `<data-dir>/master.key`
//! with owner-only permissions. `ACCESSRAIL_PREVIOUS_MASTER_KEY[_FILE]` (or a
//! `master.key.previous` file left by an interrupted rotation) can still open old secrets.

use std::fmt;
use std::path::{Path, PathBuf};

use accessrail_store::SealedSecret;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use testrail_client::ApiKey;

use crate::error::{EngineError, EngineResult};

const NONCE_LEN: usize = 24;

/// One 256-bit master key and its id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// Where the current master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// Generated now into the data directory (first use).
    Generated(PathBuf),
    /// The data directory's own key file.
    DataDir(PathBuf),
}

fn b64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

impl MasterKey {
    fn key_id(bytes: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(b"accessrail master key id v1");
        h.update(bytes);
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == 32).then(|| Self {
            id: Self::key_id(bytes),
            key: *Key::from_slice(bytes),
        })
    }

    fn parse(text: &str, what: &str) -> EngineResult<Self> {
        b64_decode(text)
            .and_then(|b| Self::from_bytes(&b))
            .ok_or_else(|| {
                EngineError::Secret(format!("{what} is not a base64-encoded 32-byte key"))
            })
    }

    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Self {
            id: Self::key_id(key.as_slice()),
            key,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn to_base64(&self) -> String {
        b64_encode(self.key.as_slice())
    }
}

/// The current master key plus older ones that can still open secrets.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
    source: KeySource,
}

fn read_key_file(path: &Path, what: &str) -> EngineResult<MasterKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Secret(format!("cannot read {what} {}: {e}", path.display())))?;
    MasterKey::parse(&text, what)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Creates `path` with `contents`, owner-only, atomically and only if it does not exist: the
/// contents go to a unique temporary file that is then hard-linked into place (a link never
/// replaces an existing file). `Ok(false)` when another process created it first.
fn create_private(path: &Path, contents: &str) -> std::io::Result<bool> {
    let tmp = path.with_extension(format!(
        "{}.{}.tmp",
        std::process::id(),
        crate::tokens::random_hex(4)
    ));
    write_private_new(&tmp, contents)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_private_new(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

impl Keyring {
    /// Loads the master key as the environment and the data directory say, generating one on
    /// first use.
    pub fn load(data_dir: &Path) -> EngineResult<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let file = data_dir.join("master.key");
        let (current, source) = if let Some(v) = env("ACCESSRAIL_MASTER_KEY") {
            (
                MasterKey::parse(&v, "ACCESSRAIL_MASTER_KEY")?,
                KeySource::Env,
            )
        } else if let Some(p) = env("ACCESSRAIL_MASTER_KEY_FILE") {
            let p = PathBuf::from(p);
            (
                read_key_file(&p, "ACCESSRAIL_MASTER_KEY_FILE")?,
                KeySource::File(p),
            )
        } else if file.exists() {
            (
                read_key_file(&file, "the master key file")?,
                KeySource::DataDir(file.clone()),
            )
        } else {
            let key = MasterKey::generate();
            match create_private(&file, &key.to_base64()) {
                Ok(true) => (key, KeySource::Generated(file.clone())),
                // Another process created it first: use theirs, never replace it.
                Ok(false) => (
                    read_key_file(&file, "the master key file")?,
                    KeySource::DataDir(file.clone()),
                ),
                Err(e) => {
                    return Err(EngineError::Secret(format!(
                        "cannot write {}: {e}",
                        file.display()
                    )));
                }
            }
        };
        let mut previous = Vec::new();
        if let Some(v) = env("ACCESSRAIL_PREVIOUS_MASTER_KEY") {
            previous.push(MasterKey::parse(&v, "ACCESSRAIL_PREVIOUS_MASTER_KEY")?);
        }
        if let Some(p) = env("ACCESSRAIL_PREVIOUS_MASTER_KEY_FILE") {
            previous.push(read_key_file(
                Path::new(&p),
                "ACCESSRAIL_PREVIOUS_MASTER_KEY_FILE",
            )?);
        }
        let leftover = data_dir.join("master.key.previous");
        if leftover.exists() {
            previous.push(read_key_file(&leftover, "the previous master key file")?);
        }
        Ok(Self {
            current,
            previous,
            source,
        })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// A 256-bit key for `purpose`, derived from the current master key (every process that
    /// shares the master key derives the same one; it reveals nothing about the master key).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"accessrail-derive-v1\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(self.current.key.as_slice());
        h.finalize().into()
    }

    /// The ids of every master key this keyring can open secrets with.
    pub fn known_ids(&self) -> Vec<&str> {
        std::iter::once(self.current.id())
            .chain(self.previous.iter().map(MasterKey::id))
            .collect()
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Seals `key` for the connection `connection_id`.
    pub fn seal(&self, connection_id: &str, key: &ApiKey) -> EngineResult<SealedSecret> {
        let cipher = XChaCha20Poly1305::new(&self.current.key);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key.expose_secret().as_bytes(),
                    aad: connection_id.as_bytes(),
                },
            )
            .map_err(|_| EngineError::Secret("encryption failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend(ct);
        Ok(SealedSecret {
            key_id: self.current.id.clone(),
            bytes,
        })
    }

    /// Opens a secret sealed for `connection_id` with any key of the ring.
    pub fn open(&self, connection_id: &str, sealed: &SealedSecret) -> EngineResult<ApiKey> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                EngineError::Secret(format!(
                    "the API key was sealed with master key {}, which is not available (current key: {}); set ACCESSRAIL_MASTER_KEY or ACCESSRAIL_PREVIOUS_MASTER_KEY",
                    sealed.key_id, self.current.id
                ))
            })?;
        if sealed.bytes.len() <= NONCE_LEN {
            return Err(EngineError::Secret("the stored API key is damaged".into()));
        }
        let (nonce, ct) = sealed.bytes.split_at(NONCE_LEN);
        let plain = XChaCha20Poly1305::new(&key.key)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: connection_id.as_bytes(),
                },
            )
            .map_err(|_| {
                EngineError::Secret(
                    "the stored API key cannot be decrypted (wrong key or tampered data)".into(),
                )
            })?;
        let text = String::from_utf8(plain)
            .map_err(|_| EngineError::Secret("the stored API key is damaged".into()))?;
        ApiKey::new(text).ok_or_else(|| EngineError::Secret("the stored API key is empty".into()))
    }

    /// For rotation of a data-directory key: a new key is written beside the old one first
    /// (`master.key.previous` keeps the old one until the secrets are resealed).
    pub(crate) fn begin_rotation(&mut self, data_dir: &Path) -> EngineResult<()> {
        let file = match &self.source {
            KeySource::DataDir(p) | KeySource::Generated(p) => p.clone(),
            KeySource::Env | KeySource::File(_) => {
                return Err(EngineError::Usage(
                    "the master key is managed outside Accessrail (ACCESSRAIL_MASTER_KEY / _FILE): set the new key there, the old one in ACCESSRAIL_PREVIOUS_MASTER_KEY, then run rotate-master-key to reseal every secret".into(),
                ));
            }
        };
        let previous = data_dir.join("master.key.previous");
        write_private(&previous, &self.current.to_base64()).map_err(|e| {
            EngineError::Secret(format!("cannot write {}: {e}", previous.display()))
        })?;
        let new = MasterKey::generate();
        write_private(&file, &new.to_base64())
            .map_err(|e| EngineError::Secret(format!("cannot write {}: {e}", file.display())))?;
        let old = std::mem::replace(&mut self.current, new);
        self.previous.push(old);
        Ok(())
    }

    pub(crate) fn finish_rotation(&mut self, data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join("master.key.previous"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bind_to_the_connection() {
        let dir = tempfile::tempdir().expect("dir");
        let ring = Keyring::load(dir.path()).expect("ring");
        assert!(matches!(ring.source(), KeySource::Generated(_)));
        let key = ApiKey::new("top-secret").expect("key");
        let sealed = ring.seal("conn-1", &key).expect("seal");
        assert!(!sealed.bytes.windows(10).any(|w| w == b"top-secret"));
        assert_eq!(
            ring.open("conn-1", &sealed).expect("open").expose_secret(),
            "top-secret"
        );
        assert!(
            ring.open("conn-2", &sealed).is_err(),
            "bound to the connection id"
        );
        let mut tampered = sealed.clone();
        if let Some(b) = tampered.bytes.last_mut() {
            *b ^= 1;
        }
        assert!(ring.open("conn-1", &tampered).is_err());
        // The same directory gives the same key.
        let again = Keyring::load(dir.path()).expect("ring");
        assert_eq!(again.current_id(), ring.current_id());
        assert!(matches!(again.source(), KeySource::DataDir(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
