//! Random values the server draws once and keeps in its `data_dir` (mode 0600), so that they
//! survive restarts: the session cookie key, the machine token key, the EC2 pool's owner id.

use std::io::Write;
use std::path::Path;

/// The `len` random bytes kept at `path`, drawn and written (atomically) on first use, or
/// again when the file is shorter than `len`.
pub fn load_or_create(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= len => return Ok(bytes[..len].to_vec()),
        Ok(_) => tracing::warn!(path = %path.display(), "key file too short: drawing a new one"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    let temp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    Ok(bytes)
}
