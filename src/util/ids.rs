//! Names that become paths: store keys are checked before any store or message uses them.

use crate::error::{Error, Result};

/// Check a key is safe to use as a relative path: no `..`, no absolute paths, no empty segments.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !key.contains('\\')
        && !key.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!("invalid store key {key:?}")))
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
