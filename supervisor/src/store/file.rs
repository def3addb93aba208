//! A crash-safe [`MetadataStore`] of one JSON file per record (temp file, fsync, rename,
//! fsync dir).
//!
//! Layout under the root: `namespaces/<name>.json`, `containers/<ns>/<id>.json`,
//! `tasks/<ns>/<id>.json`. Names are validated ids, so they are safe path components.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{MetadataStore, Snapshot};
use crate::error::{Error, Result};
use crate::model::{Container, Namespace, TaskRecord};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `data` atomically and durably: after it returns, a crash leaves either
/// the old or the new contents, never a mix, and the new contents survive power loss.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent dir", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::Internal(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` durably; a missing file is not an error.
pub fn durable_remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("remove", path, e)),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

/// Creates `dir` (and parents) and makes the new entries durable.
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
    // Records live at most three levels under the store root (`tasks/<ns>/<id>.json`), so
    // syncing three parents covers every directory this can have created below the root.
    let mut d = dir;
    for _ in 0..3 {
        let Some(parent) = d.parent() else { break };
        sync_dir(parent)?;
        d = parent;
    }
    Ok(())
}

/// One JSON file per record under a root directory.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<FileStore> {
        for sub in ["namespaces", "containers", "tasks"] {
            ensure_dir(&root.join(sub))?;
        }
        Ok(FileStore {
            root: root.to_path_buf(),
        })
    }

    fn namespace_path(&self, name: &str) -> PathBuf {
        self.root.join("namespaces").join(format!("{name}.json"))
    }

    fn container_path(&self, ns: &str, id: &str) -> PathBuf {
        self.root
            .join("containers")
            .join(ns)
            .join(format!("{id}.json"))
    }

    fn task_path(&self, ns: &str, id: &str) -> PathBuf {
        self.root.join("tasks").join(ns).join(format!("{id}.json"))
    }

    fn put<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        let data = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
            op: "encode",
            path: path.to_path_buf(),
            source,
        })?;
        atomic_write(path, &data)
    }
}

/// Reads every `*.json` in `dir` (ignoring and removing leftover temp files).
fn read_dir_records<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read dir", dir, e)),
    };
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if name.starts_with('.') && name.contains(".tmp-") {
            // A write that crashed before its rename: the old record (if any) is intact.
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        match serde_json::from_slice(&data) {
            Ok(v) => out.push(v),
            Err(source) => {
                tracing::warn!(path = %path.display(), error = %source, "skipping unreadable record");
            }
        }
    }
    Ok(out)
}

fn sub_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read dir", dir, e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

impl MetadataStore for FileStore {
    fn load(&self) -> Result<Snapshot> {
        let namespaces = read_dir_records::<Namespace>(&self.root.join("namespaces"))?;
        let mut containers = Vec::new();
        for (ns, dir) in sub_dirs(&self.root.join("containers"))? {
            for c in read_dir_records::<Container>(&dir)? {
                containers.push((ns.clone(), c));
            }
        }
        let mut tasks = Vec::new();
        for (_, dir) in sub_dirs(&self.root.join("tasks"))? {
            tasks.extend(read_dir_records::<TaskRecord>(&dir)?);
        }
        Ok(Snapshot {
            namespaces,
            containers,
            tasks,
        })
    }

    fn put_namespace(&self, ns: &Namespace) -> Result<()> {
        self.put(&self.namespace_path(&ns.name), ns)
    }

    fn delete_namespace(&self, name: &str) -> Result<()> {
        durable_remove(&self.namespace_path(name))
    }

    fn put_container(&self, namespace: &str, container: &Container) -> Result<()> {
        self.put(&self.container_path(namespace, &container.id), container)
    }

    fn delete_container(&self, namespace: &str, id: &str) -> Result<()> {
        durable_remove(&self.container_path(namespace, id))
    }

    fn put_task(&self, task: &TaskRecord) -> Result<()> {
        self.put(&self.task_path(&task.namespace, &task.container_id), task)
    }

    fn delete_task(&self, namespace: &str, id: &str) -> Result<()> {
        durable_remove(&self.task_path(namespace, id))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::model::RuntimeConfig;

    fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            image: "busybox".into(),
            runtime: RuntimeConfig::default(),
            spec: "{}".into(),
            rootfs: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
            extensions: BTreeMap::from([("x".into(), vec![0, 1, 255])]),
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }

    #[test]
    fn records_round_trip_through_a_reopened_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store
            .put_namespace(&Namespace {
                name: "ns1".into(),
                labels: BTreeMap::new(),
            })
            .unwrap();
        let c = container("c1");
        store.put_container("ns1", &c).unwrap();
        store.put_container("ns2", &container("c2")).unwrap();
        store.delete_container("ns2", "c2").unwrap();
        store.delete_container("ns2", "never-existed").unwrap();

        let reopened = FileStore::open(dir.path()).unwrap();
        let snap = reopened.load().unwrap();
        assert_eq!(snap.namespaces.len(), 1);
        assert_eq!(snap.containers, vec![("ns1".to_string(), c)]);
        assert!(snap.tasks.is_empty());
    }

    #[test]
    fn crashed_write_leaves_old_record_and_temp_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let c = container("c1");
        store.put_container("ns", &c).unwrap();
        // A writer killed between create and rename leaves a partial temp file behind.
        let tmp = dir.path().join("containers/ns/.c1.json.tmp-1-1");
        fs::write(&tmp, b"{\"id\": \"c1\", \"spe").unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.containers, vec![("ns".to_string(), c)]);
        assert!(!tmp.exists(), "leftover temp file is cleaned up");
    }

    #[test]
    fn torn_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("containers/ns")).unwrap();
        fs::write(dir.path().join("containers/ns/bad.json"), b"{").unwrap();
        store.put_container("ns", &container("good")).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.containers.len(), 1);
        assert_eq!(snap.containers[0].1.id, "good");
    }
}
