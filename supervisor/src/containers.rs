//! Namespaces and containers: validated, stored crash-safely, cached in memory, announced as
//! events.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::RwLock;

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::ids;
use crate::model::{Container, Namespace};
use crate::store::MetadataStore;

/// Which container fields an update replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateMask {
    /// Replace labels.
    pub labels: bool,
    /// Replace the spec.
    pub spec: bool,
    /// Replace the image.
    pub image: bool,
    /// Replace the runtime.
    pub runtime: bool,
    /// Replace the extensions.
    pub extensions: bool,
}

impl UpdateMask {
    /// Parses `update_mask` field names; an empty list means every field.
    pub fn parse(fields: &[String]) -> Result<UpdateMask> {
        if fields.is_empty() {
            return Ok(UpdateMask {
                labels: true,
                spec: true,
                image: true,
                runtime: true,
                extensions: true,
            });
        }
        let mut mask = UpdateMask::default();
        for f in fields {
            match f.as_str() {
                "labels" => mask.labels = true,
                "spec" => mask.spec = true,
                "image" => mask.image = true,
                "runtime" => mask.runtime = true,
                "extensions" => mask.extensions = true,
                other => return Err(Error::UnknownField(other.to_string())),
            }
        }
        Ok(mask)
    }
}

#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<String, Namespace>,
    containers: BTreeMap<(String, String), Container>,
}

/// Namespaces and container metadata.
#[derive(Debug)]
pub struct ContainerService {
    store: Arc<dyn MetadataStore>,
    events: EventBus,
    // Writers hold the lock across the store write so the cache and the disk agree and two
    // creates of one id cannot both succeed; readers never wait on I/O of other objects for
    // long (one small fsync).
    state: RwLock<State>,
}

/// Checks that `spec` parses as an OCI runtime spec.
pub fn validate_spec(id: &str, spec: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(spec).map_err(|e| Error::InvalidSpec {
        id: id.to_string(),
        reason: format!("not UTF-8: {e}"),
    })?;
    if text.trim().is_empty() {
        return Err(Error::InvalidSpec {
            id: id.to_string(),
            reason: "spec is empty".into(),
        });
    }
    serde_json::from_str::<oci_spec::runtime::Spec>(text).map_err(|e| Error::InvalidSpec {
        id: id.to_string(),
        reason: e.to_string(),
    })?;
    Ok(text.to_string())
}

/// Runs a store call on the blocking pool (it fsyncs).
pub(crate) async fn blocking<T, F>(store: &Arc<dyn MetadataStore>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn MetadataStore) -> Result<T> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
}

impl ContainerService {
    /// Loads namespaces and containers from `store`.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        events: EventBus,
        namespaces: Vec<Namespace>,
        containers: Vec<(String, Container)>,
    ) -> ContainerService {
        let mut state = State::default();
        for ns in namespaces {
            state.namespaces.insert(ns.name.clone(), ns);
        }
        for (ns, c) in containers {
            state.containers.insert((ns, c.id.clone()), c);
        }
        ContainerService {
            store,
            events,
            state: RwLock::new(state),
        }
    }

    /// Creates a namespace; ALREADY_EXISTS if it exists.
    pub async fn create_namespace(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Namespace> {
        ids::validate("namespace", name)?;
        let mut state = self.state.write().await;
        if state.namespaces.contains_key(name) {
            return Err(Error::NamespaceExists(name.to_string()));
        }
        let ns = Namespace {
            name: name.to_string(),
            labels,
        };
        let rec = ns.clone();
        blocking(&self.store, move |s| s.put_namespace(&rec)).await?;
        state.namespaces.insert(name.to_string(), ns.clone());
        drop(state);
        tracing::info!(namespace = %name, "namespace created");
        self.events
            .publish(Event::new(name, "/namespaces/create", ""));
        Ok(ns)
    }

    /// All namespaces, by name.
    pub async fn list_namespaces(&self) -> Vec<Namespace> {
        self.state
            .read()
            .await
            .namespaces
            .values()
            .cloned()
            .collect()
    }

    /// Removes an empty namespace.
    pub async fn remove_namespace(&self, name: &str) -> Result<()> {
        ids::validate("namespace", name)?;
        let mut state = self.state.write().await;
        if !state.namespaces.contains_key(name) {
            return Err(Error::NamespaceNotFound(name.to_string()));
        }
        if state.containers.keys().any(|(ns, _)| ns == name) {
            return Err(Error::NamespaceNotEmpty(name.to_string()));
        }
        let n = name.to_string();
        blocking(&self.store, move |s| s.delete_namespace(&n)).await?;
        state.namespaces.remove(name);
        drop(state);
        tracing::info!(namespace = %name, "namespace removed");
        self.events
            .publish(Event::new(name, "/namespaces/remove", ""));
        Ok(())
    }

    /// Creates a container (and its namespace if new). Nothing is stored if validation fails.
    pub async fn create(&self, namespace: &str, mut container: Container) -> Result<Container> {
        ids::validate("namespace", namespace)?;
        ids::validate("container id", &container.id)?;
        validate_mounts(&container)?;
        container.spec = validate_spec(&container.id, container.spec.as_bytes())?;
        let now = Utc::now();
        container.created_at = now;
        container.updated_at = now;

        let mut state = self.state.write().await;
        let key = (namespace.to_string(), container.id.clone());
        if state.containers.contains_key(&key) {
            return Err(Error::ContainerExists {
                namespace: namespace.to_string(),
                id: container.id,
            });
        }
        let new_ns = !state.namespaces.contains_key(namespace);
        if new_ns {
            let ns = Namespace {
                name: namespace.to_string(),
                labels: BTreeMap::new(),
            };
            let rec = ns.clone();
            blocking(&self.store, move |s| s.put_namespace(&rec)).await?;
            state.namespaces.insert(namespace.to_string(), ns);
        }
        let rec = container.clone();
        let n = namespace.to_string();
        blocking(&self.store, move |s| s.put_container(&n, &rec)).await?;
        state.containers.insert(key, container.clone());
        drop(state);
        if new_ns {
            self.events
                .publish(Event::new(namespace, "/namespaces/create", ""));
        }
        tracing::info!(namespace = %namespace, container_id = %container.id, "container created");
        self.events
            .publish(Event::new(namespace, "/containers/create", &container.id));
        Ok(container)
    }

    /// One container.
    pub async fn get(&self, namespace: &str, id: &str) -> Result<Container> {
        ids::validate("namespace", namespace)?;
        ids::validate("container id", id)?;
        self.state
            .read()
            .await
            .containers
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| Error::ContainerNotFound {
                namespace: namespace.to_string(),
                id: id.to_string(),
            })
    }

    /// Containers of a namespace having every label of `filter` (empty value: any value).
    pub async fn list(
        &self,
        namespace: &str,
        filter: &BTreeMap<String, String>,
    ) -> Result<Vec<Container>> {
        ids::validate("namespace", namespace)?;
        let state = self.state.read().await;
        Ok(state
            .containers
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, c)| c)
            .filter(|c| {
                filter.iter().all(|(k, v)| match c.labels.get(k) {
                    Some(have) => v.is_empty() || have == v,
                    None => false,
                })
            })
            .cloned()
            .collect())
    }

    /// Replaces the fields of `mask` with those of `update`.
    pub async fn update(
        &self,
        namespace: &str,
        update: Container,
        mask: UpdateMask,
    ) -> Result<Container> {
        ids::validate("namespace", namespace)?;
        ids::validate("container id", &update.id)?;
        let spec = if mask.spec {
            Some(validate_spec(&update.id, update.spec.as_bytes())?)
        } else {
            None
        };
        let mut state = self.state.write().await;
        let key = (namespace.to_string(), update.id.clone());
        let mut c =
            state
                .containers
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::ContainerNotFound {
                    namespace: namespace.to_string(),
                    id: update.id.clone(),
                })?;
        if mask.labels {
            c.labels = update.labels;
        }
        if let Some(spec) = spec {
            c.spec = spec;
        }
        if mask.image {
            c.image = update.image;
        }
        if mask.runtime {
            c.runtime = update.runtime;
        }
        if mask.extensions {
            c.extensions = update.extensions;
        }
        c.updated_at = Utc::now();
        let rec = c.clone();
        let n = namespace.to_string();
        blocking(&self.store, move |s| s.put_container(&n, &rec)).await?;
        state.containers.insert(key, c.clone());
        drop(state);
        self.events
            .publish(Event::new(namespace, "/containers/update", &c.id));
        Ok(c)
    }

    /// Deletes a container; the caller has checked (under the container's lifecycle lock)
    /// that it has no task.
    pub async fn delete(&self, namespace: &str, id: &str) -> Result<()> {
        ids::validate("namespace", namespace)?;
        ids::validate("container id", id)?;
        let mut state = self.state.write().await;
        let key = (namespace.to_string(), id.to_string());
        if !state.containers.contains_key(&key) {
            return Err(Error::ContainerNotFound {
                namespace: namespace.to_string(),
                id: id.to_string(),
            });
        }
        let (n, i) = key.clone();
        blocking(&self.store, move |s| s.delete_container(&n, &i)).await?;
        state.containers.remove(&key);
        drop(state);
        tracing::info!(namespace = %namespace, container_id = %id, "container deleted");
        self.events
            .publish(Event::new(namespace, "/containers/delete", id));
        Ok(())
    }
}

fn validate_mounts(c: &Container) -> Result<()> {
    for m in &c.rootfs {
        if m.kind.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "container {}: rootfs mount of {:?} has no type",
                c.id, m.source
            )));
        }
        let target = std::path::Path::new(&m.target);
        if target.is_absolute()
            || target
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::InvalidArgument(format!(
                "container {}: rootfs mount target {:?} must be relative and stay inside the rootfs",
                c.id, m.target
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn spec_validation_rejects_garbage_with_a_message() {
        let err = validate_spec("c1", b"{not json").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string()
                .starts_with("invalid spec for container c1: "),
            "{err}"
        );
        assert!(validate_spec("c1", b"").is_err());
        assert!(validate_spec("c1", br#"{"ociVersion": "1.0.2", "process": 5}"#).is_err());
        validate_spec(
            "c1",
            br#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#,
        )
        .unwrap();
    }

    #[test]
    fn update_mask_parses_known_fields_only() {
        assert!(UpdateMask::parse(&[]).unwrap().spec);
        let m = UpdateMask::parse(&["labels".into()]).unwrap();
        assert!(m.labels && !m.spec);
        assert_eq!(
            UpdateMask::parse(&["id".into()]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
