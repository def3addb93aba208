//! Container records on disk: `<data-root>/containers/<id>/config.v2.json`, written crash-safely.

use std::path::Path;

use super::Record;

/// Writes a record crash-safely (temp file, fsync, rename, fsync dir).
pub fn save(dir: &Path, rec: &Record) -> std::io::Result<()> {
    save_json(dir, "config.v2.json", rec)
}

/// Writes `value` as `dir/name` crash-safely: a reader finds the old file or the new one.
pub fn save_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

pub fn load(dir: &Path) -> Option<Record> {
    let data = std::fs::read(dir.join("config.v2.json")).ok()?;
    serde_json::from_slice(&data).ok()
}
