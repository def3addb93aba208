//! Manifests and indexes as the registry sends them (Docker schema 2 and OCI), media types,
//! and `/distribution/{name}/json`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::platform::Platform;

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (Windows base) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Media types a pull accepts, in preference order (sent as `Accept`).
pub(crate) const ACCEPT: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// A content descriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

/// A platform as written in an index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: i64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
}

/// Parses a manifest body; schema 1 and unknown kinds are refused with Docker-like messages.
pub(crate) fn parse(body: &[u8], what: &str) -> Result<Parsed> {
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| Error::Unsupported(format!("invalid manifest for {what}: {e}")))?;
    if raw.schema_version == 1 {
        return Err(Error::Unsupported(format!(
            "unsupported manifest format for {what}: Docker Image manifest version 2, schema 1 is not supported; push the image with a newer client"
        )));
    }
    let media_type = raw.media_type.unwrap_or_default();
    match (raw.manifests, raw.config, raw.layers) {
        (Some(manifests), _, _) => Ok(Parsed::Index {
            media_type: if media_type.is_empty() {
                OCI_INDEX.into()
            } else {
                media_type
            },
            manifests,
        }),
        (None, Some(config), layers) => Ok(Parsed::Image {
            media_type: if media_type.is_empty() {
                OCI_MANIFEST.into()
            } else {
                media_type
            },
            config,
            layers: layers.unwrap_or_default(),
        }),
        _ => Err(Error::Unsupported(format!(
            "unsupported manifest media type for {what}: {media_type}"
        ))),
    }
}

/// Picks the manifest for `platform` from an index, as Docker does, or says which platform
/// had none (`no matching manifest for linux/arm64 in the manifest list entries`).
pub(crate) fn select_platform<'a>(
    manifests: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor> {
    manifests
        .iter()
        .find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                platform.matches(&p.os, &p.architecture, p.variant.as_deref().unwrap_or(""))
            })
        })
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no matching manifest for {platform} in the manifest list entries"
            ))
        })
}

/// Whether a layer is foreign / non-distributable (not downloaded; Docker skips them too on
/// Linux).
pub(crate) fn is_foreign(media_type: &str) -> bool {
    media_type == DOCKER_LAYER_FOREIGN || media_type.contains("nondistributable")
}

/// Compression of a layer blob (told by its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The manifest digest and platforms of a reference, as `/distribution/{name}/json` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionInspect {
    /// The manifest (or index) the reference resolves to.
    pub descriptor: ManifestDescriptor,
    /// Platforms it is available for.
    pub platforms: Vec<Platform>,
}

/// A manifest's descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDescriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:` of its bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl DistributionInspect {
    /// Docker's JSON: `{"Descriptor":{"mediaType","digest","size"},"Platforms":[{"architecture","os"}]}`.
    pub fn to_docker_json(&self) -> Value {
        json!({
            "Descriptor": {
                "mediaType": self.descriptor.media_type,
                "digest": self.descriptor.digest,
                "size": self.descriptor.size,
            },
            "Platforms": self.platforms.iter().map(|p| {
                let mut v = json!({"architecture": p.architecture, "os": p.os});
                if !p.variant.is_empty() {
                    v["variant"] = json!(p.variant);
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifests_indexes_and_refuses_schema1() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:c","size":1},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":2}]}"#;
        let Parsed::Image { layers, .. } = parse(m, "x").unwrap() else {
            panic!()
        };
        assert_eq!(layers[0].media_type, DOCKER_LAYER_GZIP);
        let i = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let Parsed::Index {
            manifests,
            media_type,
        } = parse(i, "x").unwrap()
        else {
            panic!()
        };
        assert_eq!(media_type, OCI_INDEX);
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(select_platform(&manifests, &p).unwrap().digest, "sha256:b");
        let e = select_platform(&manifests, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries"
        );
        let e = parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, "x").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        assert!(is_foreign(DOCKER_LAYER_FOREIGN));
    }
}
