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
