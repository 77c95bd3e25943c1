//! oci2disk: pull a raw (optionally compressed) disk image stored as a single-layer OCI
//! artifact (e.g. pushed with ORAS) and stream its blob onto a disk like image2disk (upstream
//! env: `IMG_URL` — a registry reference such as `registry:5000/os/ubuntu:raw.gz` — `DEST_DISK`,
//! `COMPRESSED`, `REGISTRY_USERNAME`, `REGISTRY_PASSWORD`, `SKIP_VERIFY`; ours: `PLAIN_HTTP`
//! for a registry without TLS, `SPARSE`).
//!
//! With `COMPRESSED=true` the format comes from the layer's file name
//! (`org.opencontainers.image.title`), else the reference's tag, else the media type suffix,
//! and is confirmed by the magic bytes. The blob is verified against its layer digest.

use std::path::PathBuf;
use std::time::Instant;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio_util::sync::CancellationToken;

use super::compression::Compression;
use super::download::{self, Checksum};
use super::image2disk::{StreamJob, summary};
use super::{ActionContext, ActionError, Env};

pub(crate) async fn run(
    env: &Env<'_>,
    ctx: &ActionContext,
    cancel: CancellationToken,
) -> Result<String, ActionError> {
    let image = env.required("IMG_URL")?.to_string();
    let dest = PathBuf::from(env.required("DEST_DISK")?);
    let compressed = env.bool("COMPRESSED", false)?;
    let sparse = env.bool("SPARSE", true)?;
    let plain = env.bool("PLAIN_HTTP", false)?;
    let http = ctx.http.for_action(env)?;
    let reference: Reference = image.parse().map_err(|e| ActionError::InvalidEnv {
        name: "IMG_URL",
        reason: format!("{image:?} is not an image reference: {e}"),
    })?;
    let auth = match (env.get("REGISTRY_USERNAME"), env.get("REGISTRY_PASSWORD")) {
        (Some(u), Some(p)) => RegistryAuth::Basic(u.into(), p.into()),
        _ => RegistryAuth::Anonymous,
    };
    let config = ClientConfig {
        protocol: if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: http.insecure,
        tls_certs_only: if http.ca_pem.is_empty() {
            Vec::new()
        } else {
            vec![Certificate {
                encoding: CertificateEncoding::Pem,
                data: http.ca_pem.clone(),
            }]
        },
        http_proxy: http.http_proxy.clone(),
        https_proxy: http.https_proxy.clone(),
        no_proxy: http.no_proxy.clone(),
        ..Default::default()
    };
    download::install_crypto_provider();
    let client = Client::try_from(config).map_err(|source| ActionError::Oci {
        what: "client setup".into(),
        source,
    })?;
    let oci = |what: String| move |source| ActionError::Oci { what, source };
    let (manifest, _) = client
        .pull_image_manifest(&reference, &auth)
        .await
        .map_err(oci(format!("manifest of {image}")))?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(ActionError::InvalidEnv {
            name: "IMG_URL",
            reason: format!(
                "{image} has {} layers; expected a single-layer artifact",
                manifest.layers.len()
            ),
        });
    };
    let expected = if compressed {
        let title = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.title"))
            .and_then(|t| Compression::from_extension(t));
        let by_tag = reference.tag().and_then(Compression::from_extension);
        let by_media = match layer.media_type.rsplit('+').next() {
            Some("gzip") => Some(Compression::Gzip),
            Some("zstd") => Some(Compression::Zstd),
            _ => None,
        };
        Some(title.or(by_tag).or(by_media).ok_or_else(|| ActionError::InvalidEnv {
            name: "IMG_URL",
            reason: format!("COMPRESSED=true but {image}'s layer name, tag and media type name no known compression"),
        })?)
    } else {
        None
    };
    let checksum = match layer.digest.split_once(':') {
        Some(("sha256", _) | ("sha512", _)) => Some(Checksum::parse("IMG_URL", &layer.digest)?),
        _ => None,
    };
    let started = Instant::now();
    let blob = client
        .pull_blob_stream(&reference, layer)
        .await
        .map_err(oci(format!("blob {} of {image}", layer.digest)))?;
    let len = blob.content_length;
    let body = download::spawn_body(
        blob.stream,
        len,
        checksum.as_ref().map(Checksum::hasher),
        cancel.clone(),
    );
    let job = StreamJob {
        action: "oci2disk",
        source: image.clone(),
        expected,
        dest: dest.clone(),
        sparse,
        checksum,
        progress: ctx.progress.clone(),
        interval: ctx.progress_interval,
        cancel,
    };
    let stats = job.run(body, len).await?;
    Ok(summary(&image, &dest, stats, started.elapsed()))
}
